//! The layering rule, checked: every `crate::` path in a module points to a
//! module of a lower layer (or its own), never up and never sideways to
//! another module of the same layer. The table is the picture of
//! `docs/architecture.md`, bottom first.

use std::path::Path;

/// Each top-level module and its layer; lower layers are imported by higher.
const LAYERS: &[(&str, u8)] = &[
    ("protocol", 0),
    // A leaf of async plumbing, imported by transports and sessions.
    ("wake", 0),
    ("model", 1),
    // Leaves beside the model: imported from above, importing only below.
    ("config", 2),
    ("certs", 2),
    ("telemetry", 2),
    ("auth", 2),
    ("caps", 2),
    ("budgets", 2),
    ("transport", 3),
    ("hooks", 3),
    ("hub", 4),
    ("redis_io", 5),
    ("store", 6),
    ("broker", 6),
    ("routing", 7),
    // Receipts, read positions, amendments, typing: over the store and
    // broker, beside the publish path.
    ("chat", 7),
    // Push to offline users: over the store, broker and hub, told of
    // stored direct messages through the model's `InboxWatch`.
    ("push", 7),
    ("webhook", 7),
    ("gateway", 8),
    ("session", 9),
    ("admission", 10),
    ("api", 11),
    ("quic", 11),
    ("server", 12),
    // Entry points for the fuzz targets: may reach into any module.
    ("fuzzing", 13),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Every `crate::<module>` named in code (comments skipped) of `text`.
fn imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
            rest = after;
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if ["lib", "main", "layers"].contains(&top) {
            continue;
        }
        let own = layer(top).unwrap_or_else(|| panic!("{top} is not in LAYERS"));
        for target in imports(&std::fs::read_to_string(file).unwrap()) {
            if target == top {
                continue;
            }
            let theirs = layer(&target).unwrap_or_else(|| panic!("{target} is not in LAYERS"));
            if theirs >= own {
                wrong.push(format!("{} imports crate::{target}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_imports_and_skips_comments() {
    let text =
        "use crate::hub::Hub;\n// crate::server in a comment\nlet x = crate::model::now_ms();";
    assert_eq!(imports(text), vec!["hub", "model"]);
}
