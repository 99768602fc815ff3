//! The TypeScript declarations and the README's TypeScript examples compile with `tsc --strict`
//! (installed by `python3 dev.py install-ts`, which `python3 dev.py test` runs).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/typescript")
}

#[test]
fn the_declarations_and_examples_compile() {
    let dir = examples();
    let tsc = dir.join("node_modules/.bin/tsc");
    assert!(
        tsc.is_file(),
        "{} is missing: run `python3 dev.py install-ts` (or `python3 dev.py test`)",
        tsc.display()
    );
    let out = Command::new(&tsc)
        .arg("-p")
        .arg(&dir)
        .output()
        .expect("run tsc");
    assert!(
        out.status.success(),
        "tsc failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_type_error_in_an_example_is_caught() {
    // The check above is only worth something if tsc refuses a wrong payload.
    let dir = examples();
    let tsc = dir.join("node_modules/.bin/tsc");
    assert!(tsc.is_file(), "run `python3 dev.py install-ts`");
    // The same layout in a scratch directory: examples/typescript/route.ts next to
    // schemas/ts/, so the example's relative import resolves to copies of the declarations.
    let scratch = tempfile::tempdir().unwrap();
    let example_dir = scratch.path().join("examples/typescript");
    let schemas_dir = scratch.path().join("schemas/ts");
    std::fs::create_dir_all(&example_dir).unwrap();
    std::fs::create_dir_all(&schemas_dir).unwrap();
    for file in ["events.d.ts", "gateway.d.ts"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("ts").join(file);
        std::fs::copy(from, schemas_dir.join(file)).unwrap();
    }
    let broken = std::fs::read_to_string(dir.join("nextjs-route.ts"))
        .unwrap()
        .replace("type: \"order.created\"", "type: \"order.teleported\"");
    std::fs::write(example_dir.join("route.ts"), broken).unwrap();
    let config = serde_json::json!({
        "compilerOptions": {
            "target": "ES2022", "module": "ES2022", "moduleResolution": "bundler",
            "lib": ["ES2022", "DOM"], "types": ["node"],
            "typeRoots": [dir.join("node_modules/@types")],
            "strict": true, "noEmit": true
        },
        "files": ["route.ts"]
    });
    std::fs::write(example_dir.join("tsconfig.json"), config.to_string()).unwrap();
    let out = Command::new(&tsc)
        .arg("-p")
        .arg(&example_dir)
        .output()
        .expect("run tsc");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "tsc accepted an unknown event type");
    assert!(text.contains("order.teleported"), "{text}");
}

#[test]
fn the_readme_shows_the_examples_as_they_are_compiled() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for file in ["nextjs-route.ts", "nats-publisher.ts"] {
        let code = std::fs::read_to_string(examples().join(file)).unwrap();
        assert!(
            readme.contains(&code),
            "README.md does not hold examples/typescript/{file} as it is"
        );
    }
}
