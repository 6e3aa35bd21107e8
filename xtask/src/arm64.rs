//! `cargo xtask arm64 [--files DIR] -- COMMAND...`: runs COMMAND as root
//! in an emulated arm64 machine (qemu-system-aarch64, TCG) booted from
//! Debian's arm64 cloud kernel and a busybox initramfs, with the arm64
//! gotrace on PATH and DIR's files under /files; prints what COMMAND
//! printed (its stdout on stdout, its stderr on stderr) and exits with
//! its status.
//!
//! One argument is a shell script (`-- 'gotrace funccount ... & ...'`);
//! several are one command's words. The guest has busybox's tools, the
//! kernel's BPF, uprobes and tracefs, and `/proc/kallsyms` lists loaded
//! BPF programs (`bpf_prog_<tag>_<name>`), which is how the arm64 tests
//! check that nothing is left attached (bpftool is not in the guest).

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    build, setup,
    util::{root, run},
};

/// What the guest prints around COMMAND's output on the serial console.
const BEGIN_STDOUT: &str = "@@gotrace-vm-stdout";
const BEGIN_STDERR: &str = "@@gotrace-vm-stderr";
const EXIT: &str = "@@gotrace-vm-exit ";

/// The guest's /init: mounts what gotrace needs, runs /command with its
/// streams in files, prints them between markers, powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
ip link set lo up
echo 1 > /proc/sys/net/core/bpf_jit_kallsyms
cd /files
sh /command > /tmp/gotrace-vm-stdout 2> /tmp/gotrace-vm-stderr
status=$?
echo "@@gotrace-vm-stdout"
cat /tmp/gotrace-vm-stdout
echo "@@gotrace-vm-stderr"
cat /tmp/gotrace-vm-stderr
echo "@@gotrace-vm-exit $status"
poweroff -f
"#;

/// The arm64 machine's parts on the host.
pub struct Machine {
    /// Debian's arm64 cloud kernel (a plain arm64 Image).
    pub kernel: PathBuf,
    /// busybox-static for arm64.
    pub busybox: PathBuf,
    /// gotrace built for aarch64-unknown-linux-musl.
    pub gotrace: PathBuf,
}

impl Machine {
    /// Installs and builds what is missing (the `cargo xtask arm64` path).
    pub fn prepare() -> anyhow::Result<Machine> {
        let parts = setup::arm64()?;
        setup::build_tools()?;
        let gotrace = build::gotrace_arm64()?;
        Ok(Machine {
            kernel: parts.kernel,
            busybox: parts.busybox,
            gotrace,
        })
    }

    /// What an earlier `prepare` left, without installing or building:
    /// for the integration tests, which run inside `cargo test` (a cargo
    /// build there would wait for the lock `cargo test` holds).
    pub fn prepared() -> anyhow::Result<Machine> {
        let parts = setup::arm64_parts();
        let machine = Machine {
            kernel: parts.kernel,
            busybox: parts.busybox,
            gotrace: build::gotrace_arm64_path(),
        };
        for part in [&machine.kernel, &machine.busybox, &machine.gotrace] {
            if !part.exists() {
                bail!(
                    "{} is missing: run `cargo xtask arm64 -- true` (or `cargo xtask setup`) first",
                    part.display()
                );
            }
        }
        Ok(machine)
    }
}

/// What COMMAND did in the guest.
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

/// The `cargo xtask arm64` command.
pub fn command(
    files: Option<&Path>,
    command: &[String],
    timeout: Duration,
    prepared: bool,
) -> anyhow::Result<i32> {
    let machine = if prepared {
        Machine::prepared()?
    } else {
        Machine::prepare()?
    };
    let outcome = boot(&machine, files, &script(command), timeout)?;
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    Ok(outcome.status)
}

/// The guest's /command for COMMAND's arguments.
fn script(command: &[String]) -> String {
    match command {
        [script] => format!("{script}\n"),
        words => {
            let quoted: Vec<String> = words
                .iter()
                .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
                .collect();
            format!("{}\n", quoted.join(" "))
        }
    }
}

/// Boots the machine with `files` under /files, runs `script`, and
/// returns what it printed; fails if the guest does not finish in
/// `timeout` or dies before COMMAND ends (the console then says why).
pub fn boot(
    machine: &Machine,
    files: Option<&Path>,
    script: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let work = root().join(format!("target/arm64-vm/run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let tree = work.join("root");
    for dir in [
        "bin", "usr/bin", "proc", "sys", "dev", "tmp", "root", "files",
    ] {
        std::fs::create_dir_all(tree.join(dir))
            .with_context(|| format!("creating {}", tree.join(dir).display()))?;
    }
    copy(&machine.busybox, &tree.join("bin/busybox"))?;
    copy(&machine.gotrace, &tree.join("usr/bin/gotrace"))?;
    if let Some(files) = files {
        if !files.is_dir() {
            bail!("--files {}: not a directory", files.display());
        }
        run(Command::new("cp")
            .arg("-a")
            .arg(files.join("."))
            .arg(tree.join("files")))?;
    }
    write_executable(&tree.join("init"), INIT)?;
    write_executable(&tree.join("command"), script)?;
    let initrd = work.join("initrd.cpio");
    let archive =
        std::fs::File::create(&initrd).with_context(|| format!("creating {}", initrd.display()))?;
    // cpio reads the file list on stdin; `find .` gives it.
    let list = Command::new("find")
        .arg(".")
        .current_dir(&tree)
        .output()
        .context("running find for the initramfs")?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&tree)
        .stdin(Stdio::piped())
        .stdout(archive)
        .spawn()
        .context("running cpio (installed by cargo xtask setup)")?;
    std::io::Write::write_all(
        &mut cpio.stdin.take().context("cpio's stdin")?,
        &list.stdout,
    )?;
    if !cpio.wait()?.success() {
        bail!("cpio failed to write {}", initrd.display());
    }
    let console = qemu(machine, &initrd, timeout);
    let _ = std::fs::remove_dir_all(&work);
    parse(&console?)
}

/// Runs qemu to the guest's power-off and returns its console.
fn qemu(machine: &Machine, initrd: &Path, timeout: Duration) -> anyhow::Result<String> {
    let mut child = Command::new("qemu-system-aarch64")
        // `pauth-impdef`: the architected pointer-authentication
        // algorithm is 2-4x slower to emulate.
        .args(["-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "1"])
        .args(["-m", "2048", "-nographic", "-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&machine.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyAMA0 rdinit=/init quiet loglevel=3 panic=-1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-aarch64 (installed by cargo xtask setup)")?;
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().context("qemu's stdout")?;
    let mut stderr = child.stderr.take().context("qemu's stderr")?;
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(&mut stdout)
            .split(b'\n')
            .map_while(Result::ok)
        {
            let _ = tx.send(());
            lines.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned(),
            );
        }
        lines
    });
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let lines = reader.join().unwrap_or_default();
            let mut errors = String::new();
            let _ = stderr.read_to_string(&mut errors);
            if !status.success() {
                bail!("qemu-system-aarch64 failed ({status}): {}", errors.trim());
            }
            return Ok(lines.join("\n"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let lines = reader.join().unwrap_or_default();
            bail!(
                "the arm64 machine did not finish in {timeout:?}; its console:\n{}",
                lines.join("\n")
            );
        }
        let _ = rx.recv_timeout(Duration::from_millis(200));
    }
}

/// COMMAND's output and status from the guest's console.
fn parse(console: &str) -> anyhow::Result<Outcome> {
    let lines: Vec<&str> = console.lines().collect();
    let find = |marker: &str| lines.iter().position(|l| l.starts_with(marker));
    let (Some(out), Some(err), Some(exit)) = (find(BEGIN_STDOUT), find(BEGIN_STDERR), find(EXIT))
    else {
        bail!("the arm64 machine stopped before its command finished; its console:\n{console}");
    };
    let status = lines[exit][EXIT.len()..]
        .trim()
        .parse()
        .with_context(|| format!("the guest's exit line {:?}", lines[exit]))?;
    let text = |range: &[&str]| range.iter().map(|l| format!("{l}\n")).collect::<String>();
    Ok(Outcome {
        stdout: text(&lines[out + 1..err]),
        stderr: text(&lines[err + 1..exit]),
        status,
    })
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_argument_is_a_script_several_are_words() {
        assert_eq!(script(&["a | b".to_owned()]), "a | b\n");
        assert_eq!(
            script(&["gotrace".to_owned(), "it's".to_owned()]),
            "'gotrace' 'it'\\''s'\n"
        );
    }

    #[test]
    fn console_between_markers() {
        let console = "[ 1.0] boot\n@@gotrace-vm-stdout\nout 1\n\n@@gotrace-vm-stderr\nerr\n@@gotrace-vm-exit 3\n[ 2.0] reboot";
        let outcome = parse(console).unwrap();
        assert_eq!(outcome.stdout, "out 1\n\n");
        assert_eq!(outcome.stderr, "err\n");
        assert_eq!(outcome.status, 3);
        assert!(parse("[ 1.0] Kernel panic").is_err());
    }
}
