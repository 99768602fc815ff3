use std::path::{Path, PathBuf};
use std::process::Command;

fn configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            configs(&path, out);
        } else if path.extension().is_some_and(|e| e == "conf") {
            out.push(path);
        }
    }
}

#[test]
fn every_nats_config_passes_nats_server_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats-config");
    let mut files = Vec::new();
    configs(&root, &mut files);
    assert!(
        files.len() >= 5,
        "dev, accounts and three cluster nodes: {files:?}"
    );
    let binary = conveyor::testing::nats_server_binary().unwrap();
    for file in files {
        let out = Command::new(&binary)
            .arg("-c")
            .arg(&file)
            .arg("-t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} is invalid: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
