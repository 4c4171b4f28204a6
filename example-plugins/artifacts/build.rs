//! Builds every example plugin as a `wasm32-wasip2` component and writes `gen.rs`, which
//! names each component's path. Tests and benchmarks depend on this crate instead of
//! building plugins by hand; a fresh machine needs nothing but a Rust toolchain installed
//! with rustup (the wasm target is added here when missing).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example plugins: (crate directory under `example-plugins/`, package name).
const PLUGINS: &[(&str, &str)] = &[
    ("filter", "eddy-example-filter"),
    ("enrich", "eddy-example-enrich"),
    ("fraud", "eddy-example-fraud"),
    ("chaos", "eddy-example-chaos"),
    ("distinct", "eddy-example-distinct"),
    ("numbering", "eddy-example-numbering"),
    ("visits", "eddy-example-visits"),
];

/// Plugins built a second time with a feature, as another release: (name, package,
/// feature). The `visits` example's release 2 migrates the keyed state of release 1; the
/// `chaos` test plugin's `aggregate` build is a window aggregate.
const RELEASES: &[(&str, &str, &str)] = &[
    ("visits_v2", "eddy-example-visits", "v2"),
    ("chaos_aggregate", "eddy-example-chaos", "aggregate"),
];

const TARGET: &str = "wasm32-wasip2";

/// Example plugins in other languages: (language, directory under
/// `example-plugins/<language>/`, world), each built by `plugin-sdk/<language>/build.sh`
/// (which installs its pinned toolchain once into a cache outside the repository), with
/// feature `other-languages`.
const OTHER_LANGUAGES: &[(&str, &str, &str)] = &[
    ("python", "filter", "filter-plugin"),
    ("python", "enrich", "transform-plugin"),
    ("js", "filter", "filter-plugin"),
    ("js", "enrich", "transform-plugin"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // A nested cargo on the outer target dir would wait forever on its build lock.
    let target_dir = out_dir.join("wasm");

    ensure_wasm_target();

    let packages: Vec<&str> = PLUGINS.iter().map(|(_, p)| *p).collect();
    build(&workspace, &target_dir, &packages, None);
    for (name, package, feature) in RELEASES {
        build(&workspace, &out_dir.join(name), &[package], Some(feature));
    }

    let release = target_dir.join(TARGET).join("release");
    let mut generated = String::new();
    for (dir, package) in PLUGINS {
        let stem = package.replace('-', "_");
        let wasm = release.join(format!("{stem}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        track_sources(&release.join(format!("{stem}.d")));
        let konst = format!("{}_COMPONENT", dir.to_uppercase());
        writeln!(
            generated,
            "/// Path of the `{dir}` example plugin, a `{TARGET}` component.\npub const {konst}: &str = {:?};",
            wasm.display().to_string()
        )
        .unwrap();
    }
    for (name, package, feature) in RELEASES {
        let stem = package.replace('-', "_");
        let wasm = out_dir
            .join(name)
            .join(TARGET)
            .join("release")
            .join(format!("{stem}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        writeln!(
            generated,
            "/// Path of `{package}` built with feature `{feature}`, a `{TARGET}` component.\npub const {}_COMPONENT: &str = {:?};",
            name.to_uppercase(),
            wasm.display().to_string()
        )
        .unwrap();
    }
    let other_languages = env::var_os("CARGO_FEATURE_OTHER_LANGUAGES").is_some();
    for (language, name, world) in OTHER_LANGUAGES.iter().filter(|_| other_languages) {
        let wasm = build_other(&workspace, &out_dir, language, name, world);
        writeln!(
            generated,
            "/// Path of the {language} `{name}` example plugin, a `{world}` component.\npub const {}_{}_COMPONENT: &str = {:?};",
            language.to_uppercase(),
            name.to_uppercase(),
            wasm.display().to_string()
        )
        .unwrap();
    }
    let names: Vec<String> = PLUGINS
        .iter()
        .map(|(dir, _)| format!("({dir:?}, {}_COMPONENT)", dir.to_uppercase()))
        .collect();
    writeln!(
        generated,
        "/// Every example plugin: (name, component path).\npub const ALL: &[(&str, &str)] = &[{}];",
        names.join(", ")
    )
    .unwrap();
    std::fs::write(out_dir.join("gen.rs"), generated).unwrap();
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    // Its `[target.wasm32-wasip2]` rustflags shape the plugins' code.
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join(".cargo/config.toml").display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}

/// Builds `packages` for the wasm target into `target_dir` (with `feature`, if given),
/// optimised as plugins ship.
fn build(workspace: &Path, target_dir: &Path, packages: &[&str], feature: Option<&str>) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for package in packages {
        cmd.args(["-p", package]);
    }
    if let Some(feature) = feature {
        cmd.args(["--features", feature]);
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the example plugins");
    assert!(
        status.success(),
        "building the example plugins for {TARGET} failed (see the output above)"
    );
}

/// Builds the `language` example plugin `name` with its SDK's build script.
fn build_other(
    workspace: &Path,
    out_dir: &Path,
    language: &str,
    name: &str,
    world: &str,
) -> PathBuf {
    let sdk = workspace.join("plugin-sdk").join(language);
    let app = workspace.join("example-plugins").join(language).join(name);
    let wasm = out_dir.join(language).join(format!("{name}.wasm"));
    track_files(&sdk);
    track_files(&app);
    let status = Command::new("bash")
        .arg(sdk.join("build.sh"))
        .args([app.as_os_str(), world.as_ref(), wasm.as_os_str()])
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run bash for {}: {e}",
                sdk.join("build.sh").display()
            )
        });
    assert!(
        status.success(),
        "building the {language} `{name}` example failed (see the output above)"
    );
    wasm
}

/// Emits `rerun-if-changed` for every file under `dir`, but caches and installed packages
/// (which tests write, and which must not rebuild the plugins).
fn track_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if ["__pycache__", ".pytest_cache", "node_modules"].contains(&name.to_str().unwrap_or("")) {
            continue;
        }
        if path.is_dir() {
            track_files(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Adds the wasm target with rustup when the active toolchain lacks it.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("could not run rustc");
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    if Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (once)");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .unwrap_or_else(|e| {
            panic!("the {TARGET} target is missing and rustup could not be run ({e}); install it with `rustup target add {TARGET}`")
        });
    assert!(status.success(), "`rustup target add {TARGET}` failed");
}

/// Emits `rerun-if-changed` for every source file listed in a dep-info (`.d`) file.
fn track_sources(dep_info: &Path) {
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return;
    };
    let Some((_, deps)) = text.lines().next().and_then(|l| l.split_once(": ")) else {
        return;
    };
    for dep in deps.split_whitespace() {
        println!("cargo:rerun-if-changed={dep}");
    }
}
