//! ServiceAccounts that a GitOps tool applies too, on the local control plane with the real
//! controller. Eight ServiceAccounts that one binding selects are applied again every 1.5 s
//! by another manager for a fixed window: client-side `kubectl apply` (Argo CD's default
//! sync) and forced server-side apply as `argocd-controller` (Argo CD's `ServerSideApply`)
//! and `kustomize-controller` (Flux), of manifests without `imagePullSecrets`, with their own
//! entry, and with their own entry and ours. Like Flux's drift detection and Argo CD's
//! self-heal, the server-side writer writes only when a dry run shows drift; `kubectl apply`
//! decides that itself. Meanwhile a Pod is created from each ServiceAccount every second.
//!
//! Every version the API server reports is attributed by resourceVersion: the other
//! manager's writes are the versions its requests returned, the rest are the controller's,
//! and their number must equal the controller's own ServiceAccount write counter. The
//! figures (writes per minute by each side, Pods that got the Secret) are printed. The
//! controller must write only to put back an entry a foreign write dropped, never when its
//! entry is there, and the README's GitOps section must cite the field manager, operation
//! and fields the API server shows for the controller's writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod controller_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acr_credential_controller::model::service_accounts::ADDED_ANNOTATION;
use controller_common::{Harness, SECRET_NAME, pull_secret_names, wait_sa, wait_secret};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

/// Label on this test's ServiceAccounts; the binding selects ServiceAccounts by it.
const CASE_LABEL: &str = "acrcredentials.io/test-gitops-manager";
/// How often the other manager applies its manifest.
const PERIOD: Duration = Duration::from_millis(1500);
/// How often a Pod is created from each ServiceAccount.
const POD_EVERY: Duration = Duration::from_secs(1);
/// The other manager's own pull Secret.
const THEIRS: &str = "team-registry";

/// How the other manager writes.
#[derive(Clone, Copy, Debug)]
enum Writer {
    /// `kubectl apply` (client-side, field manager `kubectl-client-side-apply`).
    ClientSide,
    /// Server-side apply with force under this field manager.
    ServerSide(&'static str),
}

#[derive(Clone, Copy, Debug)]
struct Case {
    slug: &'static str,
    writer: Writer,
    /// `imagePullSecrets` in the manifest (`None`: the field is absent).
    pull_secrets: Option<&'static [&'static str]>,
}

impl Case {
    /// Whether the manifest leaves the controller's entry alone (absent, or listing it).
    fn leaves_ours(&self) -> bool {
        self.pull_secrets.is_none_or(|p| p.contains(&SECRET_NAME))
    }

    fn manifest(&self, name: &str, ns: &str) -> Value {
        let mut m = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": {CASE_LABEL: "selected"}},
        });
        if let Some(p) = self.pull_secrets {
            m["imagePullSecrets"] = p.iter().map(|n| json!({"name": n})).collect();
        }
        m
    }

    fn describe(&self) -> String {
        let writer = match self.writer {
            Writer::ClientSide => "kubectl apply".to_owned(),
            Writer::ServerSide(m) => format!("SSA --force as {m}"),
        };
        let list = match self.pull_secrets {
            None => "-".to_owned(),
            Some(p) => p.join(","),
        };
        format!("{writer}, imagePullSecrets [{list}]")
    }
}

const OURS_TOO: &[&str] = &[THEIRS, SECRET_NAME];
const CASES: [Case; 8] = [
    Case {
        slug: "csa-none",
        writer: Writer::ClientSide,
        pull_secrets: None,
    },
    Case {
        slug: "csa-own",
        writer: Writer::ClientSide,
        pull_secrets: Some(&[THEIRS]),
    },
    Case {
        slug: "csa-ours-too",
        writer: Writer::ClientSide,
        pull_secrets: Some(OURS_TOO),
    },
    Case {
        slug: "argocd-none",
        writer: Writer::ServerSide("argocd-controller"),
        pull_secrets: None,
    },
    Case {
        slug: "argocd-own",
        writer: Writer::ServerSide("argocd-controller"),
        pull_secrets: Some(&[THEIRS]),
    },
    Case {
        slug: "flux-none",
        writer: Writer::ServerSide("kustomize-controller"),
        pull_secrets: None,
    },
    Case {
        slug: "flux-own",
        writer: Writer::ServerSide("kustomize-controller"),
        pull_secrets: Some(&[THEIRS]),
    },
    Case {
        slug: "flux-ours-too",
        writer: Writer::ServerSide("kustomize-controller"),
        pull_secrets: Some(OURS_TOO),
    },
];

/// The window the other managers write in (`ACC_GITOPS_WINDOW_SECONDS`, default 24).
fn window() -> Duration {
    let seconds = std::env::var("ACC_GITOPS_WINDOW_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    Duration::from_secs(seconds)
}

fn controller_sa_writes() -> u64 {
    acr_credential_controller::metrics::global()
        .writes
        .get_or_create(&vec![
            ("kind", "ServiceAccount".to_owned()),
            ("verb", "patch".to_owned()),
        ])
        .get()
}

/// The object without what changes on every write regardless of content.
fn content(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    v
}

/// One apply by the other manager; the resourceVersion it wrote, if it wrote.
async fn apply_once(
    case: &Case,
    sas: &Api<ServiceAccount>,
    ns: &str,
    name: &str,
    file: &str,
) -> Option<String> {
    match case.writer {
        Writer::ClientSide => {
            let file = file.to_owned();
            let out = tokio::task::spawn_blocking(move || {
                support::kubectl(&[
                    "apply",
                    "-f",
                    &file,
                    "-v=6",
                    "-o",
                    "jsonpath={.metadata.resourceVersion}",
                ])
            })
            .await
            .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "kubectl apply: {stderr}");
            // kubectl sends a PATCH only when its three-way diff is not empty.
            let patched = stderr
                .lines()
                .any(|l| l.contains("PATCH https://") && l.contains(" 200 OK"));
            patched.then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Writer::ServerSide(manager) => {
            let manifest = case.manifest(name, ns);
            let live = serde_json::to_value(sas.get(name).await.unwrap()).unwrap();
            let dry = sas
                .patch(
                    name,
                    &PatchParams::apply(manager).force().dry_run(),
                    &Patch::Apply(&manifest),
                )
                .await
                .unwrap();
            if content(&serde_json::to_value(&dry).unwrap()) == content(&live) {
                return None;
            }
            let after = sas
                .patch(
                    name,
                    &PatchParams::apply(manager).force(),
                    &Patch::Apply(&manifest),
                )
                .await
                .unwrap();
            let rv = after.metadata.resource_version.unwrap();
            (live["metadata"]["resourceVersion"] != rv.as_str()).then_some(rv)
        }
    }
}

/// Every version of a ServiceAccount seen during the window, in order.
#[derive(Clone, Debug)]
struct Version {
    name: String,
    rv: String,
    obj: Value,
}

fn names(obj: &Value) -> Vec<String> {
    obj["imagePullSecrets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn ours(obj: &Value) -> usize {
    names(obj).iter().filter(|n| *n == SECRET_NAME).count()
}

/// Figures for one case.
#[derive(Debug, Default)]
struct Figures {
    other_writes: usize,
    /// Foreign writes after which the controller's entry was gone.
    removals: usize,
    controller_writes: usize,
    pods: usize,
    pods_with_secret: usize,
    problems: Vec<String>,
}

/// Leaf field paths of a FieldsV1 tree, without the `.` markers.
fn leaves(fields: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    let children: Vec<_> = map.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() && !prefix.is_empty() {
        out.insert(prefix.to_owned());
    }
    for (k, v) in children {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}/{k}")
        };
        leaves(v, &path, out);
    }
}

/// The README's "GitOps: Argo CD and Flux" section.
fn readme_gitops_section() -> String {
    let text = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let start = text
        .find("## GitOps: Argo CD and Flux")
        .expect("README has a GitOps section");
    let rest = &text[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |e| e);
    rest[..end].to_owned()
}

/// The YAML code blocks of a Markdown text.
fn yaml_blocks(text: &str) -> Vec<String> {
    text.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn another_manager_and_the_controller_do_not_fight() {
    let h = Harness::new("gitops-managers", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let sas = h.service_accounts(&ns);
    let pods: Api<Pod> = Api::namespaced(h.client(), &ns);
    let running = h.start();
    let binding = h.named("gitops");
    h.bind(
        &binding,
        &h.test_binding()
            .names(&[&ns])
            .service_accounts_labelled(CASE_LABEL, "selected"),
    )
    .await;
    h.wait_ready(&binding, "True", Duration::from_secs(60))
        .await;
    wait_secret(&h.secrets(&ns), "our Secret", |_| true).await;

    // Each ServiceAccount is created by its first apply; the controller binds it (unless the
    // manifest lists our Secret already) and Kubernetes' token controller adds its token.
    let dir = std::env::temp_dir().join(format!("{}-manifests", h.id));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = BTreeMap::new();
    for case in &CASES {
        let name = case.slug.to_owned();
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            serde_yaml::to_string(&case.manifest(&name, &ns)).unwrap(),
        )
        .unwrap();
        let file = file.to_str().unwrap().to_owned();
        match case.writer {
            Writer::ClientSide => {
                let out = support::kubectl(&["apply", "-f", &file]);
                assert!(out.status.success(), "{out:?}");
            }
            Writer::ServerSide(manager) => {
                sas.patch(
                    &name,
                    &PatchParams::apply(manager).force(),
                    &Patch::Apply(&case.manifest(&name, &ns)),
                )
                .await
                .unwrap();
            }
        }
        files.insert(name, file);
    }
    for case in &CASES {
        wait_sa(&sas, case.slug, "bound, with its token", |sa| {
            pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
                && sa.secrets.as_ref().is_some_and(|s| !s.is_empty())
        })
        .await;
    }

    // The window: a watch from the current version, the other managers, Pods.
    let list = sas
        .list(&ListParams::default().labels(&format!("{CASE_LABEL}=selected")))
        .await
        .unwrap();
    let start_rv = list.metadata.resource_version.clone().unwrap();
    let baseline: BTreeMap<String, Value> = list
        .items
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap(),
                serde_json::to_value(s).unwrap(),
            )
        })
        .collect();
    let seen: Arc<Mutex<Vec<Version>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let mut stream = sas
            .watch(
                &WatchParams::default().labels(&format!("{CASE_LABEL}=selected")),
                &start_rv,
            )
            .await
            .unwrap()
            .boxed();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                match event.unwrap() {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                        seen.lock().unwrap().push(Version {
                            name: o.metadata.name.clone().unwrap(),
                            rv: o.metadata.resource_version.clone().unwrap(),
                            obj: serde_json::to_value(&o).unwrap(),
                        });
                    }
                    WatchEvent::Bookmark(_) => {}
                    WatchEvent::Error(e) => panic!("watch: {e}"),
                }
            }
        })
    };
    let binding_rv_before = h
        .bindings()
        .get(&binding)
        .await
        .unwrap()
        .metadata
        .resource_version;
    let writes_before = controller_sa_writes();
    let window = window();
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let sas = sas.clone();
        let pods = pods.clone();
        let case = *case;
        let file = files[case.slug].clone();
        let ns = ns.clone();
        // Writers and Pods start out of phase with one another.
        let offset = PERIOD * u32::try_from(i).unwrap() / u32::try_from(CASES.len()).unwrap();
        tasks.push(tokio::spawn(async move {
            let writer = async {
                tokio::time::sleep(offset).await;
                let mut wrote = Vec::new();
                while began.elapsed() < window {
                    let tick = Instant::now();
                    if let Some(rv) = apply_once(&case, &sas, &ns, case.slug, &file).await {
                        wrote.push(rv);
                    }
                    tokio::time::sleep(PERIOD.saturating_sub(tick.elapsed())).await;
                }
                wrote
            };
            let creator = async {
                tokio::time::sleep(offset / 2).await;
                let (mut made, mut with_secret) = (0usize, 0usize);
                while began.elapsed() < window {
                    let tick = Instant::now();
                    let pod: Pod = serde_json::from_value(json!({
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": format!("{}-{made}", case.slug)},
                        "spec": {
                            "serviceAccountName": case.slug,
                            "automountServiceAccountToken": false,
                            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                        },
                    }))
                    .unwrap();
                    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
                    made += 1;
                    let got = pod
                        .spec
                        .and_then(|s| s.image_pull_secrets)
                        .unwrap_or_default()
                        .iter()
                        .any(|r| r.name == SECRET_NAME);
                    with_secret += usize::from(got);
                    tokio::time::sleep(POD_EVERY.saturating_sub(tick.elapsed())).await;
                }
                (made, with_secret)
            };
            let (wrote, pods) = tokio::join!(writer, creator);
            (case, wrote, pods)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let measured = began.elapsed();
    // Let the controller answer the last writes, then wait for the watch to catch up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut finals = BTreeMap::new();
    for case in &CASES {
        let sa = serde_json::to_value(sas.get(case.slug).await.unwrap()).unwrap();
        let rv = sa["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        support::wait_until(Duration::from_secs(30), "the watch to catch up", || {
            let seen = seen.clone();
            let rv = rv.clone();
            let baseline_rv = baseline[case.slug]["metadata"]["resourceVersion"].clone();
            async move {
                let caught_up =
                    baseline_rv == rv.as_str() || seen.lock().unwrap().iter().any(|v| v.rv == rv);
                if caught_up {
                    Ok(())
                } else {
                    Err(format!("not yet at {rv}"))
                }
            }
        })
        .await;
        finals.insert(case.slug, sa);
    }
    let controller_writes_counted = controller_sa_writes() - writes_before;
    let binding_rv_after = h
        .bindings()
        .get(&binding)
        .await
        .unwrap()
        .metadata
        .resource_version;
    watch.abort();
    let seen = seen.lock().unwrap().clone();

    // Attribution, per case.
    let minutes = measured.as_secs_f64() / 60.0;
    let mut figures = BTreeMap::new();
    for (case, wrote, (made, with_secret)) in &results {
        let mut f = Figures {
            other_writes: wrote.len(),
            pods: *made,
            pods_with_secret: *with_secret,
            ..Figures::default()
        };
        let mut prev = baseline[case.slug].clone();
        for v in seen.iter().filter(|v| v.name == case.slug) {
            if ours(&v.obj) > 1 {
                f.problems.push(format!(
                    "{}: our entry twice at {}: {:?}",
                    case.slug,
                    v.rv,
                    names(&v.obj)
                ));
            }
            if wrote.contains(&v.rv) {
                if ours(&prev) > 0 && ours(&v.obj) == 0 {
                    f.removals += 1;
                }
            } else {
                f.controller_writes += 1;
                // The controller writes only to put back what a foreign write dropped, and
                // keeps everything else in place.
                if ours(&prev) != 0 {
                    f.problems.push(format!(
                        "{}: controller wrote at {} although its entry was there: {:?} -> {:?}",
                        case.slug,
                        v.rv,
                        names(&prev),
                        names(&v.obj)
                    ));
                }
                let before = names(&prev);
                let after = names(&v.obj);
                if after.len() < before.len() || after[..before.len()] != before[..] {
                    f.problems.push(format!(
                        "{}: controller write at {} changed others' entries: {before:?} -> {after:?}",
                        case.slug, v.rv
                    ));
                }
            }
            prev = v.obj.clone();
        }
        figures.insert(case.slug, (*case, f));
    }

    println!(
        "\nGitOps managers: {} s window, other manager every {} ms, a Pod every {} ms",
        measured.as_secs(),
        PERIOD.as_millis(),
        POD_EVERY.as_millis()
    );
    println!(
        "{:<14} {:<72} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case", "other manager", "other/min", "removed", "ctrl", "ctrl/min", "pods ok"
    );
    for (slug, (case, f)) in &figures {
        println!(
            "{slug:<14} {:<72} {:>9.1} {:>9} {:>9} {:>9.1} {:>9}",
            case.describe(),
            f.other_writes as f64 / minutes,
            f.removals,
            f.controller_writes,
            f.controller_writes as f64 / minutes,
            format!("{}/{}", f.pods_with_secret, f.pods),
        );
    }
    println!(
        "binding status: {} (resourceVersion {:?} -> {:?})",
        if binding_rv_before == binding_rv_after {
            "not written"
        } else {
            "written"
        },
        binding_rv_before,
        binding_rv_after
    );

    // The controller's own counter agrees with the attribution.
    let attributed: usize = figures.values().map(|(_, f)| f.controller_writes).sum();
    assert_eq!(
        attributed as u64, controller_writes_counted,
        "versions attributed to the controller vs its ServiceAccount write counter"
    );
    for (slug, (case, f)) in &figures {
        assert!(f.problems.is_empty(), "{slug}: {:#?}", f.problems);
        assert!(f.pods > 0, "{slug}: no Pod created");
        let last = &finals[slug];
        assert_eq!(ours(last), 1, "{slug} ends unbound: {:?}", names(last));
        if let Some(p) = case.pull_secrets {
            let theirs: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
            assert!(
                theirs.iter().all(|t| names(last).contains(t)),
                "{slug}: the other manager's entries are gone: {:?}",
                names(last)
            );
        }
        if case.leaves_ours() {
            // Quiet: nobody writes, every Pod gets the Secret.
            assert_eq!(f.other_writes, 0, "{slug}: the other manager wrote");
            assert_eq!(f.controller_writes, 0, "{slug}: the controller wrote");
            assert_eq!(
                f.pods_with_secret, f.pods,
                "{slug}: Pods without the Secret"
            );
        } else {
            // A manifest with its own list replaces ours on every apply: the controller puts
            // it back once per removal, and not more.
            assert!(
                f.removals > 0,
                "{slug}: the other manager never dropped our entry"
            );
            assert!(
                f.controller_writes <= f.removals,
                "{slug}: {} controller writes for {} removals",
                f.controller_writes,
                f.removals
            );
        }
    }

    // Dropping `imagePullSecrets` from the manifest, after the fight. Forced server-side
    // apply owns no part of the list the controller wrote last: nothing changes. Client-side
    // apply removes what its last-applied annotation listed, so the whole list goes once and
    // the controller puts its entry back once.
    let flux = CASES.iter().find(|c| c.slug == "flux-own").unwrap();
    let before = sas.get(flux.slug).await.unwrap();
    let mut dropped = *flux;
    dropped.pull_secrets = None;
    let after = sas
        .patch(
            flux.slug,
            &PatchParams::apply("kustomize-controller").force(),
            &Patch::Apply(&dropped.manifest(flux.slug, &ns)),
        )
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version,
        "Flux's apply without imagePullSecrets wrote: {:?}",
        pull_secret_names(&after)
    );
    assert_eq!(pull_secret_names(&after), [THEIRS, SECRET_NAME]);
    let csa = CASES.iter().find(|c| c.slug == "csa-own").unwrap();
    let mut dropped = *csa;
    dropped.pull_secrets = None;
    let file = dir.join("csa-own-dropped.yaml");
    std::fs::write(
        &file,
        serde_yaml::to_string(&dropped.manifest(csa.slug, &ns)).unwrap(),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    let writes_before = controller_sa_writes();
    let first = apply_once(&dropped, &sas, &ns, csa.slug, &file).await;
    assert!(
        first.is_some(),
        "kubectl apply without imagePullSecrets sent nothing"
    );
    let back = wait_sa(&sas, csa.slug, "our entry back", |sa| {
        pull_secret_names(sa) == [SECRET_NAME]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = apply_once(&dropped, &sas, &ns, csa.slug, &file).await;
    assert_eq!(second, None, "kubectl apply wrote again");
    let last = sas.get(csa.slug).await.unwrap();
    assert_eq!(
        last.metadata.resource_version, back.metadata.resource_version,
        "the ServiceAccount changed after the controller put its entry back"
    );
    assert_eq!(
        controller_sa_writes() - writes_before,
        1,
        "controller writes"
    );
    println!(
        "dropping imagePullSecrets from the manifest: SSA as kustomize-controller wrote nothing; \
         kubectl apply removed the list once, the controller put its entry back once"
    );

    // The managedFields the controller's writes produce, as the README cites them.
    let mut entries = Vec::new();
    for (slug, sa) in &finals {
        let managed = sa["metadata"]["managedFields"].as_array().unwrap();
        let owner: Vec<&Value> = managed
            .iter()
            .filter(|e| e["fieldsV1"]["f:imagePullSecrets"].is_object())
            .collect();
        println!(
            "{slug}: imagePullSecrets owned by {:?}; managers {:?}",
            owner
                .iter()
                .map(|e| format!(
                    "{}/{}",
                    e["manager"].as_str().unwrap(),
                    e["operation"].as_str().unwrap()
                ))
                .collect::<Vec<_>>(),
            managed
                .iter()
                .map(|e| format!(
                    "{}/{}",
                    e["manager"].as_str().unwrap(),
                    e["operation"].as_str().unwrap()
                ))
                .collect::<Vec<_>>()
        );
        if let Some(e) = managed.iter().find(|e| {
            e["fieldsV1"]["f:metadata"]["f:annotations"][format!("f:{ADDED_ANNOTATION}")]
                .is_object()
        }) {
            entries.push((*slug, e.clone()));
        }
    }
    let section = readme_gitops_section();
    let blocks = yaml_blocks(&section);
    let cited = blocks
        .iter()
        .find(|b| b.contains("--show-managed-fields"))
        .expect("the README's GitOps section shows the controller's managedFields entry");
    let cited: Value = serde_yaml::from_str(cited).unwrap();
    let cited = cited
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("a managedFields list with one entry");
    let mut cited_fields = BTreeSet::new();
    leaves(&cited["fieldsV1"], "", &mut cited_fields);
    // Every ServiceAccount the controller bound carries that entry.
    let bound_by_us: Vec<&str> = CASES
        .iter()
        .filter(|c| c.pull_secrets.is_none_or(|p| !p.contains(&SECRET_NAME)))
        .map(|c| c.slug)
        .collect();
    assert_eq!(
        entries.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>(),
        bound_by_us.iter().copied().collect::<BTreeSet<_>>(),
        "ServiceAccounts with the controller's annotation entry"
    );
    for (slug, e) in &entries {
        assert_eq!(e["manager"], cited["manager"], "{slug}: field manager");
        assert_eq!(e["operation"], cited["operation"], "{slug}: operation");
        assert_eq!(e["apiVersion"], cited["apiVersion"], "{slug}: apiVersion");
        let mut fields = BTreeSet::new();
        leaves(&e["fieldsV1"], "", &mut fields);
        assert_eq!(fields, cited_fields, "{slug}: fields of {e}");
    }
    // The Argo CD ignoreDifferences the README gives name that manager and that field.
    let argocd = blocks
        .iter()
        .find(|b| b.contains("ignoreDifferences"))
        .expect("the README's GitOps section gives Argo CD's ignoreDifferences");
    let argocd: Value = serde_yaml::from_str(argocd).unwrap();
    let rules = argocd["spec"]["ignoreDifferences"].as_array().unwrap();
    let managers: Vec<&Value> = rules
        .iter()
        .filter_map(|r| r["managedFieldsManagers"].as_array())
        .flatten()
        .collect();
    assert_eq!(managers, [&cited["manager"]], "managedFieldsManagers");
    let pointers: Vec<&str> = rules
        .iter()
        .filter_map(|r| r["jsonPointers"].as_array())
        .flatten()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(!pointers.is_empty(), "a jsonPointers rule");
    for rule in rules {
        assert_eq!(rule["kind"], "ServiceAccount", "{rule}");
        assert!(rule["group"].as_str().unwrap_or("").is_empty(), "{rule}");
    }
    for (slug, sa) in &finals {
        for p in &pointers {
            let at = sa
                .pointer(p)
                .unwrap_or_else(|| panic!("{slug}: nothing at {p}"));
            assert!(
                at.as_array()
                    .is_some_and(|a| a.iter().any(|r| r["name"] == SECRET_NAME)),
                "{slug}: {p} does not hold our entry: {at}"
            );
        }
    }
    assert!(
        argocd["spec"]["syncPolicy"]["syncOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o == "RespectIgnoreDifferences=true")),
        "RespectIgnoreDifferences=true"
    );

    let _ = std::fs::remove_dir_all(&dir);
    running.stop().await;
}
