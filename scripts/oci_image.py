#!/usr/bin/env python3
"""Builds an OCI image archive from a compiled binary, without a container engine.

The image holds the binary (without debug information), the shared libraries it links (found with
ldd, so the image runs whatever the build machine's glibc is; none for a static binary), CA
certificates, a non-root user 65532 and /tmp. The archive is an OCI
image layout in a tar (oci-archive), which containerd imports with `ctr images import` and podman or
skopeo read as `oci-archive:`. Output is deterministic: fixed timestamps and sorted entries.

usage: oci_image.py BINARY NAME:TAG OUTPUT.tar [--port N]
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

USER = 65532


def shared_libraries(binary):
    """Absolute paths of the libraries the binary loads, the dynamic loader included; none for a
    statically linked binary (for which ldd says "not a dynamic executable" and exits with 1)."""
    result = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        sys.exit(f"ldd {binary} failed: {result.stderr.strip()}")
    output = result.stdout
    paths = []
    for line in output.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                paths.append(target)
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])
    return sorted(set(paths))


def add_file(archive, source, target, mode):
    with open(source, "rb") as handle:
        data = handle.read()
    add_bytes(archive, target, data, mode)


def add_bytes(archive, target, data, mode):
    info = tarfile.TarInfo(target.lstrip("/"))
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def add_directory(archive, target, mode):
    info = tarfile.TarInfo(target.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    archive.addfile(info)


def layer(binary, name):
    """The single layer: an uncompressed tar, as bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        directories = set()
        files = [(binary, f"/usr/local/bin/{name}", 0o755)]
        for library in shared_libraries(binary):
            files.append((os.path.realpath(library), library, 0o755))
        certificates = "/etc/ssl/certs/ca-certificates.crt"
        if os.path.exists(certificates):
            files.append((certificates, certificates, 0o644))
        for _, target, _ in files:
            parent = os.path.dirname(target)
            while parent not in ("", "/"):
                directories.add(parent)
                parent = os.path.dirname(parent)
        for directory in sorted(directories | {"/etc", "/home", "/home/nonroot"}):
            add_directory(archive, directory, 0o755)
        add_directory(archive, "/tmp", 0o1777)
        add_bytes(archive, "/etc/passwd", f"nonroot:x:{USER}:{USER}::/home/nonroot:/sbin/nologin\n".encode(), 0o644)
        add_bytes(archive, "/etc/group", f"nonroot:x:{USER}:\n".encode(), 0o644)
        for source, target, mode in sorted(files, key=lambda item: item[1]):
            add_file(archive, source, target, mode)
    return buffer.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return f"sha256:{digest}"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, reference, output = sys.argv[1:4]
    port = sys.argv[sys.argv.index("--port") + 1] if "--port" in sys.argv else None
    name = os.path.basename(binary)
    with tempfile.TemporaryDirectory() as scratch:
        # Debug information is no use in an image and can be most of a debug build's size.
        stripped = os.path.join(scratch, name)
        shutil.copyfile(binary, stripped)
        subprocess.run(["strip", "--strip-debug", stripped], check=True)
        raw = layer(stripped, name)
    compressed = gzip.compress(raw, mtime=0)
    blobs = {}
    layer_digest = blob(blobs, compressed)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{USER}:{USER}",
            "Entrypoint": [f"/usr/local/bin/{name}"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "WorkingDir": "/home/nonroot",
            "ExposedPorts": {f"{port}/tcp": {}} if port else {},
            "Labels": {"org.opencontainers.image.title": name},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
        "history": [{"created_by": "scripts/oci_image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(compressed),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = blob(blobs, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {
                    "org.opencontainers.image.ref.name": reference.split(":", 1)[1],
                    "io.containerd.image.name": reference,
                },
            }
        ],
    }
    with tarfile.open(output, mode="w", format=tarfile.GNU_FORMAT) as archive:
        add_bytes(archive, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        add_bytes(archive, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644)
        for digest in sorted(blobs):
            add_bytes(archive, f"blobs/sha256/{digest}", blobs[digest], 0o644)
    print(f"{reference}: {output} ({len(compressed) / 1048576:.1f} MiB compressed, manifest {manifest_digest})")


if __name__ == "__main__":
    main()
