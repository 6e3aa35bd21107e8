//! Functions whose first instruction the kernel's uprobe code runs wrongly.
//!
//! Linux emulates opcode 0x90 as a `nop` whatever its prefixes, but with
//! REX.B it is `xchg rax, r8` (Go 1.19's runtime.gcWriteBarrierR8 starts
//! with one; a probe there corrupts the heap). The args fixture's
//! `viaR8(i, 1000+i)` passes 1000+i to `swapR8` in R8, which exchanges it
//! into AX as its first instruction; the fixture exits 3 if that is skipped.

use integration_tests::{only_table, Fixture, Go, Tracer};

const CALLS: u64 = 5;

fn xchg_r8_entry(go: Go) {
    let args = Fixture::build("args", go);
    let counting = Tracer::start(&["funccount", &args.pattern("main.swapR8*")]);
    // arg5 is R8 in the C ABI: the value swapR8 received, which its probe
    // reads after the exchange and must swap back.
    let probe = args.pattern(r#"main.swapR8.abi0 "%d" arg5"#);
    let tracing = Tracer::start(&["trace", &probe]);
    args.run(&[&CALLS.to_string()]);

    let traced = tracing.stop(libc::SIGINT);
    assert!(traced.status.success(), "{traced:?}");
    let received: Vec<u64> = traced
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("PID"))
        .skip(1)
        .map(|l| {
            let last = l.split_whitespace().last().unwrap_or_default();
            last.parse().unwrap_or_else(|_| panic!("event line {l:?}"))
        })
        .collect();
    assert_eq!(
        received,
        (0..CALLS).map(|i| 1000 + i).collect::<Vec<_>>(),
        "{traced:?}"
    );

    let counted = counting.stop(libc::SIGINT);
    assert!(counted.status.success(), "{counted:?}");
    assert_eq!(
        only_table(&counted).get("main.swapR8.abi0"),
        Some(&CALLS),
        "{counted:?}"
    );
}

#[test]
fn xchg_r8_entry_go119() {
    xchg_r8_entry(Go::Go119);
}

#[test]
fn xchg_r8_entry_go127() {
    xchg_r8_entry(Go::Go127);
}
