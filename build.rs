//! Tells the test suite which real agent CLIs this machine names (`PI_BIN`, `CLAUDE_BIN`,
//! `CODEX_BIN`), so a test that needs a missing one is reported as ignored, not as passed.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for (var, cfg) in [
        ("PI_BIN", "has_pi"),
        ("CLAUDE_BIN", "has_claude"),
        ("CODEX_BIN", "has_codex"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        let named = std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .is_some_and(|v| std::path::Path::new(&v).exists());
        if named {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
