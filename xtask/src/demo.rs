//! `cargo xtask demo`: the first thing a new user runs. Builds gotrace and
//! the bundled demo Go program, starts `gotrace funccount` on the demo's
//! `main.*`, runs the demo once, then stops gotrace with Ctrl-C (SIGINT) so
//! it prints its table.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::{
    build, setup,
    util::{root, run},
};

pub fn demo() -> anyhow::Result<()> {
    setup::build_tools()?;
    let go = setup::go_toolchains()?;
    let gotrace = build::gotrace()?;
    let demo = root().join("target/demo/demo");
    run(Command::new(&go.go119)
        .current_dir(root().join("demo"))
        .env("GOTOOLCHAIN", "local")
        .arg("build")
        .arg("-o")
        .arg(&demo)
        .arg("."))?;

    let pattern = format!("{}:main.*", demo.display());
    eprintln!("xtask: $ {} funccount '{pattern}'", gotrace.display());
    let mut tracer = Command::new(&gotrace)
        .args(["funccount", &pattern])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", gotrace.display()))?;
    let mut lines = BufReader::new(tracer.stdout.take().context("gotrace's stdout")?).lines();
    // Run the demo only once every probe is in place.
    match lines.next() {
        Some(Ok(line)) if line.starts_with("Tracing") => println!("{line}"),
        _ => {
            let status = tracer.wait()?;
            bail!("gotrace funccount did not start tracing ({status})");
        }
    }
    eprintln!("xtask: $ {}", demo.display());
    let ran = Command::new(&demo).status();
    run(Command::new("kill").args(["-INT", &tracer.id().to_string()]))?;
    for line in lines {
        println!("{}", line?);
    }
    let status = tracer.wait()?;
    if !ran
        .with_context(|| format!("running {}", demo.display()))?
        .success()
        || !status.success()
    {
        bail!("the demo or gotrace failed ({status})");
    }
    Ok(())
}
