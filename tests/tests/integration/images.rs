//! The OCI images built without a container engine (scripts/oci_image.py): a valid OCI layout whose
//! digests match, and a root file system in which the binary runs on its own, as the non-root user.
//! Built here from the debug binaries; scripts/build-images.sh does the same from release builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use cassandra_sink_tests::unique_name;
use cassandra_sink_tests::worker::project_binary;

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn blob(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    let digest = digest
        .as_str()
        .expect("digest")
        .trim_start_matches("sha256:");
    let path = layout.join("blobs/sha256").join(digest);
    assert_eq!(
        sha256(&path),
        digest,
        "blob {} does not match its digest",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn images_are_valid_oci_layouts_whose_binaries_run_alone_as_non_root() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = std::env::temp_dir().join(unique_name("images"));
    std::fs::create_dir_all(&work).expect("work folder");
    for name in ["cassandra-sink-worker", "cassandra-sink-operator"] {
        let archive = work.join(format!("{name}.oci.tar"));
        run(Command::new("python3")
            .arg(root.join("scripts/oci_image.py"))
            .arg(project_binary(name))
            .arg(format!("{name}:test"))
            .arg(&archive));
        let layout = work.join(name);
        std::fs::create_dir_all(&layout).expect("layout folder");
        run(Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&layout));

        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
                .expect("index is JSON");
        let entry = &index["manifests"][0];
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            format!("{name}:test").as_str()
        );
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(&layout, &entry["digest"])).expect("manifest"),
        )
        .expect("manifest is JSON");
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(&layout, &manifest["config"]["digest"])).expect("config"),
        )
        .expect("config is JSON");
        assert_eq!(config["config"]["User"], "65532:65532");
        let layer = blob(&layout, &manifest["layers"][0]["digest"]);

        let rootfs = layout.join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("rootfs folder");
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&rootfs));
        // Nothing but the image's own files: the binary must find every library it needs there.
        let version = run(Command::new("chroot")
            .arg("--userspec=65532:65532")
            .arg(&rootfs)
            .arg(format!("/usr/local/bin/{name}"))
            .arg("--version"));
        assert!(version.starts_with(name), "{version}");
    }
    std::fs::remove_dir_all(work).ok();
}
