//! The product's modules form layers, and each layer a tree:
//!
//! - Between layers: every top-level module of `src/` has a declared rank ([`LAYERS`]), and a
//!   module names (by `use` or an inline `crate::x` path) only modules of lower rank: never one
//!   above it, never a sibling of its own rank. A top-level module missing from the ranking
//!   fails too, so a new layer is placed on purpose.
//! - Inside each layer folder: read from the source, the graph of which sibling module names
//!   which (by `use`, `super::` or `crate::<layer>::…` paths, re-exports resolved to the module
//!   that defines the item) has no cycle. Plain data every module needs lives in leaf modules
//!   (`api::patterns`, `cloud::keypair`) instead of next to the code that needs its importers.
//!
//! Unit-test modules (`tests.rs`, `mod tests { … }`) and comments do not count: they are not
//! part of the product's module graph.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module graph: node → the sibling nodes it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// One source file of a layer directory: the top-level module it belongs to, whether it is that
/// module's own file (`x.rs`, `x/mod.rs`: `super::` then means a sibling), and its text.
struct SourceFile {
    module: String,
    top: bool,
    text: String,
}

/// The non-test source files of layer `dir` (`src/api`, `src/cloud`), and its `mod.rs`.
fn layer_files(dir: &Path) -> (Vec<SourceFile>, String) {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap();
            let parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let name = parts.last().unwrap();
            if !name.ends_with(".rs") || name == "tests.rs" || rel == Path::new("mod.rs") {
                continue;
            }
            let module = parts[0].trim_end_matches(".rs").to_owned();
            let top = parts.len() == 1 || (parts.len() == 2 && name == "mod.rs");
            let text = std::fs::read_to_string(&path).unwrap();
            files.push(SourceFile { module, top, text });
        }
    }
    let root = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
    (files, root)
}

/// Source without comments and without an inline `#[cfg(test)] mod tests { … }`.
fn product_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `use` statement of `code`, flattened into paths (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn use_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let starts_word = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        if starts_word {
            expand("", after[..end].trim(), &mut out);
        }
        rest = &after[end..];
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            let path = tree.split(" as ").next().unwrap().trim();
            if !path.is_empty() {
                out.push(format!("{prefix}{path}"));
            }
        }
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&format!("{prefix}{head}"), &inner[start..], out);
        }
    }
}

/// Paths written inline in code: `crate::<layer>::x…` and `super::x…`.
fn inline_paths(code: &str, layer: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in [format!("crate::{layer}::"), "super::".to_owned()] {
        let mut rest = code;
        while let Some(i) = rest.find(&prefix) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push(tail[..end].trim_end_matches(':').to_owned());
            rest = &rest[i + prefix.len()..];
        }
    }
    out
}

/// Item name → the module that defines it, from `pub use x::{…}` lines of the layer's `mod.rs`.
fn reexports(root: &str) -> BTreeMap<String, String> {
    use_paths(&product_code(root))
        .into_iter()
        .filter_map(|p| {
            let segments: Vec<&str> = p.split("::").collect();
            (segments.len() >= 2)
                .then(|| (segments.last().unwrap().to_string(), segments[0].to_owned()))
        })
        .collect()
}

/// The sibling module a path names, seen from a file of `from`.
fn target(
    path: &str,
    file: &SourceFile,
    layer: &str,
    modules: &BTreeSet<String>,
    reexported: &BTreeMap<String, String>,
) -> Option<String> {
    let crate_prefix = format!("crate::{layer}::");
    let rest = if let Some(r) = path.strip_prefix(&crate_prefix) {
        r
    } else if let Some(r) = path.strip_prefix("super::") {
        if !file.top {
            // `super::` of a submodule file is its own module (or deeper inside it).
            return None;
        }
        r
    } else {
        return None;
    };
    let first = rest.split("::").next().unwrap_or("");
    if modules.contains(first) {
        Some(first.to_owned())
    } else {
        reexported.get(first).cloned()
    }
}

/// The graph of layer `layer` whose sources are in `dir`.
fn graph(dir: &Path, layer: &str) -> Graph {
    let (files, root) = layer_files(dir);
    let modules: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
    let reexported = reexports(&root);
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let code = product_code(&file.text);
        let paths = use_paths(&code)
            .into_iter()
            .chain(inline_paths(&code, layer));
        for path in paths {
            if let Some(to) = target(&path, file, layer, &modules, &reexported)
                && to != file.module
            {
                graph.get_mut(&file.module).unwrap().insert(to);
            }
        }
    }
    graph
}

/// A cycle of the graph, if there is one (as the list of its modules).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

fn assert_tree(layer: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let graph = graph(&dir, layer);
    assert!(!graph.is_empty(), "read no module of src/{layer}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle inside src/{layer}: {}\nwhole graph: {graph:#?}",
            cycle.join(" → ")
        );
    }
}

/// The layers of `src/`, top to bottom. A module may name only modules of a later entry.
/// `provider` is the kubelet credential provider's own library: it stands on `cloud` and `api`
/// and knows nothing of the controller. `cloud` is below everything that keeps time (the
/// `Clock` lives there) and above `api` (it turns CRD specs into its own configuration).
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["runtime"],
    &["binding", "policy", "translator", "webhook"],
    &["cluster"],
    &["model"],
    &["legacy", "provider"],
    &["cloud"],
    &["api"],
    &["metrics", "sensitive"],
];

/// The top-level modules of the library in `src/` (folders and files; not `bin/`, `lib.rs`,
/// `main.rs`), each with the non-test source of its files.
fn top_modules(src: &Path) -> BTreeMap<String, Vec<String>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name == "bin" {
                continue;
            }
            let (files, root) = layer_files(&path);
            let mut texts: Vec<String> = files.into_iter().map(|f| f.text).collect();
            texts.push(root);
            modules.insert(name, texts);
        } else if let Some(module) = name.strip_suffix(".rs")
            && module != "lib"
            && module != "main"
        {
            modules.insert(
                module.to_owned(),
                vec![std::fs::read_to_string(&path).unwrap()],
            );
        }
    }
    modules
}

/// The top-level modules a module's sources name through `crate::` (in `use` trees, including
/// `use crate::{a, b}`, and inline paths).
fn crate_targets(texts: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for text in texts {
        let code = product_code(text);
        let mut paths = use_paths(&code);
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            let starts_word = i == 0 || {
                let c = rest.as_bytes()[i - 1];
                !(c.is_ascii_alphanumeric() || c == b'_')
            };
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if starts_word {
                paths.push(tail[..end].to_owned());
            }
            rest = &rest[i + "crate::".len()..];
        }
        for path in paths {
            if let Some(rest) = path.strip_prefix("crate::")
                && let Some(first) = rest.split("::").next()
                && !first.is_empty()
            {
                out.insert(first.to_owned());
            }
        }
    }
    out
}

/// Every import of `graph` (module → the top-level modules it names) that breaks the ranking:
/// upward, sideways, or from or to a module the ranking does not place.
fn layer_violations(graph: &BTreeMap<String, BTreeSet<String>>, layers: &[&[&str]]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| l.contains(&m));
    let mut out = Vec::new();
    for (module, targets) in graph {
        let Some(from) = rank(module) else {
            out.push(format!("src/{module} is in no layer: place it in LAYERS"));
            continue;
        };
        for target in targets.iter().filter(|t| *t != module) {
            match rank(target) {
                None => out.push(format!("{module} → {target}: {target} is in no layer")),
                Some(to) if to == from => {
                    out.push(format!("{module} → {target}: siblings of one layer"))
                }
                Some(to) if to < from => out.push(format!(
                    "{module} → {target}: {target} is a layer above {module}"
                )),
                Some(_) => {}
            }
        }
    }
    out
}

#[test]
fn layers_import_only_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph: BTreeMap<String, BTreeSet<String>> = top_modules(&src)
        .iter()
        .map(|(m, texts)| (m.clone(), crate_targets(texts)))
        .collect();
    assert!(graph.len() >= 14, "read too few modules: {graph:?}");
    let violations = layer_violations(&graph, LAYERS);
    assert!(
        violations.is_empty(),
        "imports against the layering of src/:\n  {}\nwhole graph: {graph:#?}",
        violations.join("\n  ")
    );
}

#[test]
fn every_layer_folder_forms_a_tree() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && name != "bin" {
            assert_tree(&name);
            checked += 1;
        }
    }
    assert!(checked >= 10, "checked only {checked} layer folders");
}

#[test]
fn api_and_cloud_are_read_in_full() {
    for layer in ["api", "cloud"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(layer);
        let graph = graph(&dir, layer);
        assert!(
            graph.len() > 5,
            "read too few modules of {layer}: {graph:?}"
        );
    }
}

/// The layer checker itself: it sees `use crate::{a, b}`, inline paths and nested trees, and
/// refuses an upward import, a sibling import and an unplaced module; test modules and
/// comments do not count.
#[test]
fn the_layer_checker_refuses_upward_sibling_and_unplaced_imports() {
    let texts = |t: &str| vec![t.to_owned()];
    let targets = crate_targets(&texts(
        "use crate::{low, mid::{x, y}};\nfn f() -> crate::other::T { todo!() }\n// crate::commented\nuse std::x::crate_like;\n#[cfg(test)]\nmod tests {\nuse crate::top;\n}\n",
    ));
    assert_eq!(
        targets.into_iter().collect::<Vec<_>>(),
        ["low", "mid", "other"]
    );
    let layers: &[&[&str]] = &[&["top"], &["mid", "side"], &["low"]];
    let graph = |edges: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    };
    assert!(
        layer_violations(
            &graph(&[("top", &["mid", "low"]), ("mid", &["low"])]),
            layers
        )
        .is_empty()
    );
    let upward = layer_violations(&graph(&[("low", &["mid"])]), layers);
    assert_eq!(upward, ["low → mid: mid is a layer above low"]);
    let sideways = layer_violations(&graph(&[("mid", &["side"])]), layers);
    assert_eq!(sideways, ["mid → side: siblings of one layer"]);
    let unplaced = layer_violations(&graph(&[("new", &["low"]), ("low", &["gone"])]), layers);
    assert_eq!(
        unplaced,
        [
            "low → gone: gone is in no layer",
            "src/new is in no layer: place it in LAYERS"
        ]
    );
}

/// The checker itself: it sees edges written every way the sources write them, and a cycle
/// made of them.
#[test]
fn the_checker_finds_a_cycle_through_nested_uses_reexports_and_inline_paths() {
    let dir = std::env::temp_dir().join(format!("module-tree-{}", std::process::id()));
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "mod.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub use c::{Thing, Other};\n",
    );
    write("a.rs", "use super::{x, b::{self, Y}};\n");
    write(
        "b.rs",
        "// use super::a;\nfn f() -> crate::cloud::Thing { todo!() }\n",
    );
    write("c/mod.rs", "pub struct Thing;\npub mod d;\n");
    write(
        "c/d.rs",
        "use super::Thing;\nuse crate::cloud::a::Z;\n#[cfg(test)]\nmod tests {\nuse crate::cloud::b;\n}\n",
    );
    write("c/tests.rs", "use crate::cloud::b;\n");
    let g = graph(&dir, "cloud");
    std::fs::remove_dir_all(&dir).unwrap();
    let edges = |m: &str| g[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(edges("a"), ["b"]);
    assert_eq!(edges("b"), ["c"]);
    assert_eq!(edges("c"), ["a"]);
    assert_eq!(find_cycle(&g).unwrap().len(), 4, "{g:?}");
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}
