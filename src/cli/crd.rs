//! `acr-credential-controller crd`: print the CRDs, or write one file per CRD; with `--helm`,
//! the Helm chart's CRD templates (both variants in one file, chosen by the cluster's version).

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Args;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::CliError;
use crate::api::crd;

/// Options of `crd`.
#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Leave out the CEL rules (x-kubernetes-validations), for Kubernetes before 1.25.
    #[arg(long, conflicts_with = "helm")]
    pub no_cel: bool,

    /// Print (or write) the Helm chart's CRD templates instead: each holds the CEL variant for
    /// Kubernetes 1.25 and later and the CEL-free one before, behind `crds.install`/`crds.keep`.
    #[arg(long)]
    pub helm: bool,

    /// Write one file per CRD into this directory (as committed under crds/, or with --helm
    /// under charts/acr-credential-controller/templates/crds) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// The command that regenerates the chart's CRD templates.
pub const REGENERATE_CHART_CRDS: &str =
    "cargo run -- crd --helm --output-dir charts/acr-credential-controller/templates/crds";

/// First lines of every chart CRD template (a template comment: it renders to nothing).
fn chart_header() -> String {
    format!(
        "{{{{- /*\nGenerated from the Rust types in src/api by `acr-credential-controller crd --helm`.\nDo not edit: change the types and regenerate with\n  {REGENERATE_CHART_CRDS}\n*/}}}}\n"
    )
}

/// Kubernetes from this version on gets the CEL variant.
const CEL_FROM: &str = ">=1.25.0-0";

/// Helm reads `{{` as the start of an action: a literal one is written as an action printing it.
fn escape_template(yaml: &str) -> String {
    yaml.replace("{{", "{{ \"{{\" }}")
}

/// The CRD as YAML with the chart's labels and the keep annotation templated into `metadata`.
fn chart_body(crd: &CustomResourceDefinition) -> Result<String, CliError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let yaml = escape_template(&serde_yaml::to_string(crd)?);
    let anchor = format!("metadata:\n  name: {name}\n");
    if !yaml.contains(&anchor) {
        return Err(CliError::Manifest {
            path: crd::file_name(crd),
            message: "the CRD's metadata is not just a name; the chart template generator does not know where to put labels".into(),
        });
    }
    let metadata = format!(
        "{anchor}  labels:\n    {{{{- include \"acr-credential-controller.labels\" . | nindent 4 }}}}\n  {{{{- if .Values.crds.keep }}}}\n  annotations:\n    helm.sh/resource-policy: keep\n  {{{{- end }}}}\n"
    );
    Ok(yaml.replacen(&anchor, &metadata, 1))
}

/// The chart's CRD templates as (file name, content): one file per CRD holding both variants.
pub fn chart_templates() -> Result<Vec<(String, String)>, CliError> {
    let mut out = Vec::new();
    for (with_cel, without_cel) in crd::crds().iter().zip(crd::crds_without_cel().iter()) {
        let content = format!(
            "{}{{{{- if .Values.crds.install }}}}\n{{{{- if semverCompare \"{CEL_FROM}\" .Capabilities.KubeVersion.Version }}}}\n{}{{{{- else }}}}\n{}{{{{- end }}}}\n{{{{- end }}}}\n",
            chart_header(),
            chart_body(with_cel)?,
            chart_body(without_cel)?,
        );
        out.push((crd::file_name(with_cel), content));
    }
    Ok(out)
}

/// Prints or writes the CRDs.
pub fn run(args: &CrdArgs, out: &mut dyn Write) -> Result<ExitCode, CliError> {
    let io = |path: String| move |source| CliError::Io { path, source };
    let files: Vec<(String, String)> = if args.helm {
        chart_templates()?
    } else {
        let crds = if args.no_cel {
            crd::crds_without_cel()
        } else {
            crd::crds()
        };
        crds.iter()
            .map(|c| Ok((crd::file_name(c), crd::to_yaml(c)?)))
            .collect::<Result<_, CliError>>()?
    };
    match &args.output_dir {
        None => {
            let docs: Vec<&str> = files.iter().map(|(_, d)| d.as_str()).collect();
            out.write_all(docs.join("---\n").as_bytes())
                .map_err(io("-".to_owned()))?;
        }
        Some(dir) => {
            for (name, content) in &files {
                let path = dir.join(name);
                std::fs::write(&path, content).map_err(io(path.display().to_string()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chart_templates_hold_both_variants_behind_the_flags() {
        let files = chart_templates().unwrap();
        assert_eq!(files.len(), 2);
        for (_, t) in &files {
            assert!(t.contains("{{- if .Values.crds.install }}"));
            assert!(t.contains("helm.sh/resource-policy: keep"));
            let (cel, no_cel) = t.split_once("{{- else }}").unwrap();
            assert!(cel.contains(crd::CEL_KEY));
            assert!(!no_cel.contains(crd::CEL_KEY));
        }
    }

    #[test]
    fn literal_braces_are_escaped() {
        assert_eq!(escape_template("a {{b}}"), "a {{ \"{{\" }}b}}");
    }
}
