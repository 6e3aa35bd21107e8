//! The symbol layer on real binaries: stripped gc binaries read through
//! `.gopclntab`, build info, and `gotrace info`, checked against binutils'
//! `nm` and `go version` as independent witnesses.

use std::{collections::BTreeSet, path::Path, process::Command};

use integration_tests::{
    fixture_counts, only_table, run_gotrace, Fixture, Go, Tracer, STRIPPED_EXTERNAL_PIE,
};

/// `gotrace info --json [--functions]` of `binary`.
fn info(binary: &Path, functions: bool) -> serde_json::Value {
    let path = binary.display().to_string();
    let mut args = vec!["info", "--json", &path];
    if functions {
        args.insert(2, "--functions");
    }
    let out = run_gotrace(&args);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(&out.stdout).expect("info --json prints JSON")
}

fn function_names(info: &serde_json::Value) -> BTreeSet<(String, u64)> {
    info["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["address"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Function symbols (name, address) of an unstripped binary, by `nm`.
fn nm_functions(binary: &Path) -> BTreeSet<(String, u64)> {
    let out = Command::new("nm")
        .arg("-S")
        .arg("--defined-only")
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            let [address, size, kind, name] = f.as_slice() else {
                return None;
            };
            let sized = u64::from_str_radix(size, 16).ok()? > 0;
            (sized && matches!(*kind, "T" | "t"))
                .then(|| (name.to_string(), u64::from_str_radix(address, 16).unwrap()))
        })
        .collect()
}

fn strip_copy(fixture: &Fixture) -> std::path::PathBuf {
    let stripped = fixture.dir.path().join("stripped");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&fixture.binary)
        .status();
    assert!(status.unwrap().success());
    stripped
}

/// The flags of an externally linked PIE build, whose linker merges Go <
/// 1.26's pclntab section into `.data.rel.ro` and adds C's functions.
const EXTERNAL_PIE: &[&str] = &["-buildmode=pie", "-ldflags=-linkmode=external"];

/// pclntab names and entries of a stripped copy equal the symbol table of
/// the original (every Go function; the linker's aliases aside; with an
/// external link, C's functions and names without a package aside).
fn pclntab_matches_symtab(go: Go, flags: &[&str]) {
    let counter = Fixture::build_with("counter", go, flags);
    let stripped = strip_copy(&counter);
    let ours = info(&stripped, true);
    assert_eq!(ours["symbols"], "stripped; names from .gopclntab");
    assert_eq!(ours["stripped"], true);
    let mut from_pclntab = function_names(&ours);
    let mut from_nm = nm_functions(&counter.binary);
    if flags == EXTERNAL_PIE {
        // C's functions lie outside Go's text; dot-less names are Go
        // assembly's few local helpers (`aeshashbody`), which only the
        // internal linker names alike.
        let first = from_pclntab.iter().map(|(_, a)| *a).min().unwrap();
        let last = from_pclntab.iter().map(|(_, a)| *a).max().unwrap();
        from_pclntab.retain(|(name, _)| name.contains('.'));
        from_nm.retain(|(name, a)| name.contains('.') && (first..=last).contains(a));
    }
    // The symbol table marks assembly (ABI0) functions with `.abi0`, and
    // Go 1.19's pclntab abbreviates array types in names (`[...]`).
    let comparable = |names: &BTreeSet<(String, u64)>| -> BTreeSet<(String, u64)> {
        names
            .iter()
            .filter(|(n, _)| !n.starts_with("type..eq.["))
            .map(|(n, a)| (n.trim_end_matches(".abi0").to_owned(), *a))
            .collect()
    };
    let addresses = |names: &BTreeSet<(String, u64)>| -> BTreeSet<u64> {
        names.iter().map(|(_, a)| *a).collect()
    };
    assert_eq!(
        addresses(&from_pclntab),
        addresses(&from_nm),
        "function entries differ"
    );
    assert_eq!(
        comparable(&from_pclntab),
        comparable(&from_nm),
        "function names differ"
    );
    assert!(from_pclntab.len() > 1000);
}

#[test]
fn pclntab_matches_symtab_go119() {
    pclntab_matches_symtab(Go::Go119, &[]);
}

#[test]
fn pclntab_matches_symtab_go127() {
    pclntab_matches_symtab(Go::Go127, &[]);
}

#[test]
fn pclntab_matches_symtab_external_pie_go119() {
    pclntab_matches_symtab(Go::Go119, EXTERNAL_PIE);
}

#[test]
fn pclntab_matches_symtab_external_pie_go127() {
    pclntab_matches_symtab(Go::Go127, EXTERNAL_PIE);
}

/// Counting works the same on `strip`ped binaries, `-s -w` builds and
/// stripped PIE builds, linked by Go or by an external linker (file
/// offsets from the program headers).
#[test]
fn counts_in_stripped_and_pie_binaries() {
    for go in [Go::Go119, Go::Go127] {
        let counter = Fixture::build_with("counter", go, &["-ldflags=-s -w"]);
        let pie = Fixture::build_with("counter", go, &["-buildmode=pie", "-ldflags=-s -w"]);
        let external_pie = Fixture::build_with("counter", go, STRIPPED_EXTERNAL_PIE);
        let unstripped = Fixture::build("counter", go);
        for binary in [
            counter.binary.clone(),
            pie.binary.clone(),
            external_pie.binary.clone(),
            strip_copy(&unstripped),
        ] {
            let pattern = format!("{}:main.*", binary.display());
            let tracer = Tracer::start(&["funccount", &pattern]);
            let out = Command::new(&binary)
                .args(["3000", "300"])
                .output()
                .unwrap();
            let said = fixture_counts(&String::from_utf8_lossy(&out.stdout));
            let counts = only_table(&tracer.stop(libc::SIGINT));
            for (func, n) in &said {
                assert_eq!(counts.get(func), Some(n), "{func} in {}", binary.display());
            }
            assert_eq!(counts.get("main.main"), Some(&1));
        }
    }
}

/// Debian's gofmt has no .symtab; counting go/scanner in it must give what
/// the same count gives on gofmt built from the same Go 1.19 sources with
/// symbols, formatting the same files.
#[test]
fn debian_stripped_gofmt_counts_like_an_unstripped_build() {
    let debian = Path::new("/usr/lib/go-1.19/bin/gofmt");
    assert_eq!(
        info(debian, false)["stripped"],
        true,
        "Debian's gofmt is expected stripped"
    );
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("gofmt");
    let status = Command::new("/usr/lib/go-1.19/bin/go")
        .env("GOTOOLCHAIN", "local")
        .args(["build", "-o"])
        .arg(&built)
        .arg("cmd/gofmt")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(info(&built, false)["stripped"], false);

    let count = |gofmt: &Path| {
        let tracer = Tracer::start(&["funccount", &format!("{}:go/scanner.*", gofmt.display())]);
        let out = Command::new(gofmt)
            .args(["-l", "/usr/lib/go-1.19/src/fmt"])
            .output()
            .unwrap();
        assert!(out.status.success());
        only_table(&tracer.stop(libc::SIGINT))
    };
    let stripped = count(debian);
    let unstripped = count(&built);
    assert!(
        stripped
            .get("go/scanner.(*Scanner).next")
            .is_some_and(|&n| n > 10_000),
        "{stripped:?}"
    );
    assert_eq!(stripped, unstripped);
}

/// `gotrace info` agrees with `go version -m` and the ELF headers.
#[test]
fn info_reports_version_abi_and_layout() {
    for go in [Go::Go119, Go::Go127] {
        let plain = Fixture::build("counter", go);
        let pie = Fixture::build_with("counter", go, &["-buildmode=pie", "-ldflags=-w"]);
        let go_says = Command::new(go.compiler())
            .arg("version")
            .arg(&plain.binary)
            .output()
            .unwrap();
        // "<path>: go1.19.8"
        let version = String::from_utf8(go_says.stdout).unwrap();
        let version = version.trim().rsplit(' ').next().unwrap().to_owned();

        let plain_info = info(&plain.binary, false);
        assert_eq!(plain_info["compiler"], "gc");
        assert_eq!(plain_info["go_version"], version.as_str());
        assert_eq!(plain_info["module"], "counter");
        assert!(plain_info["abi"].as_str().unwrap().starts_with("register"));
        assert_eq!(plain_info["pie"], false);
        assert_eq!(plain_info["dwarf"], true);
        assert_eq!(plain_info["stripped"], false);

        let pie_info = info(&pie.binary, false);
        assert_eq!(pie_info["pie"], true);
        assert_eq!(pie_info["dwarf"], false);
        assert_eq!(pie_info["go_version"], version.as_str());
    }
    let not_go = info(Path::new("/bin/true"), false);
    assert_eq!(not_go["compiler"], "not Go");
}

/// `info --probe-cost` places every function's entry probe the way the
/// tools do and sorts them by what the kernel does there; each Go build
/// has all three kinds (framed functions with a stack check, `push rbp`
/// first in nosplit ones, leaves), and they add up to the functions.
#[test]
fn probe_cost_accounts_for_every_function() {
    for go in [Go::Go119, Go::Go127] {
        let counter = Fixture::build("counter", go);
        let path = counter.binary.display().to_string();
        let out = run_gotrace(&["info", "--json", "--probe-cost", &path]);
        assert!(out.status.success(), "{out:?}");
        let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let cost = &info["probe_cost"];
        let count = |key: &str| {
            cost[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key}: {cost}"))
        };
        let kinds = [
            "entries_on_stack_check_branch",
            "entries_emulated",
            "entries_single_stepped",
        ];
        for kind in kinds {
            assert!(count(kind) > 0, "no {kind}: {cost}");
        }
        let entries: u64 = kinds.iter().map(|k| count(k)).sum::<u64>() + count("unprobeable");
        assert_eq!(Some(entries), info["function_count"].as_u64(), "{cost}");
        assert!(count("exits_ret") > count("exits_tail_jump"), "{cost}");
    }
}
