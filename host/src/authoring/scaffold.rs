//! `eddy plugin new NAME --lang rust|python|js`: writes a plugin project that builds and
//! passes `eddy plugin test` as generated: the plugin's source (the same threshold filter
//! in every language), its unit tests against the language's mock host, a fixture and its
//! expected output, a build script and a README.
//!
//! Invariants: nothing is written into an existing non-empty directory; every file of a
//! project comes from the templates compiled into this binary (the Python and JavaScript
//! SDKs and the WIT contract included), so a project never depends on this repository.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `eddy-plugin-sdk` crate.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

/// What a new project is.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// The plugin's name: lowercase letters, digits, `-` and `_`, starting with a letter.
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// Where to write it (default: `./NAME`).
    pub dir: PathBuf,
    /// For Rust: a local `eddy-plugin-sdk` checkout to build against (written as a
    /// `[patch.crates-io]` override).
    pub sdk: Option<PathBuf>,
}

const WIT: &str = include_str!("../../../wit/eddy.wit");
const INPUT: &str = include_str!("templates/input.jsonl");
const EXPECTED: &str = include_str!("templates/expected.jsonl");

/// Writes the project (its shell scripts executable); returns the commands that build and test it, for the operator.
pub fn create(project: &NewProject) -> Result<String> {
    check_name(&project.name)?;
    let dir = &project.dir;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "{} already exists and is not empty; choose another name or --dir",
            dir.display()
        );
    }
    let crate_name = project.name.replace('-', "_");
    let sdk_patch = match &project.sdk {
        Some(sdk) => {
            let sdk = std::path::absolute(sdk)
                .with_context(|| format!("cannot resolve {}", sdk.display()))?;
            if !sdk.join("Cargo.toml").exists() {
                bail!(
                    "--sdk {}: no Cargo.toml there; point it at the `plugin-sdk` directory of an Eddy checkout",
                    sdk.display()
                );
            }
            format!(
                "\n# Builds against a local checkout of the SDK instead of crates.io.\n\
                 [patch.crates-io]\neddy-plugin-sdk = {{ path = {:?} }}\n",
                sdk.display().to_string()
            )
        }
        None => String::new(),
    };
    let (source, tests) = match project.lang {
        Lang::Python => ("app.py", "test_*.py, with pytest"),
        _ => ("app.js", "*.test.js, with node --test"),
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", &project.name)
            .replace("{{source}}", source)
            .replace("{{tests}}", tests)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_patch}}", &sdk_patch)
    };
    let mut files: Vec<(&str, String)> = vec![
        ("fixtures/input.jsonl", INPUT.to_owned()),
        ("fixtures/expected.jsonl", EXPECTED.to_owned()),
    ];
    match project.lang {
        Lang::Rust => files.extend([
            (
                "Cargo.toml",
                fill(include_str!("templates/rust/Cargo.toml.tmpl")),
            ),
            (
                "src/lib.rs",
                fill(include_str!("templates/rust/lib.rs.tmpl")),
            ),
            (
                "README.md",
                fill(include_str!("templates/rust/README.md.tmpl")),
            ),
            (".gitignore", "/target\n".to_owned()),
        ]),
        Lang::Python | Lang::Js => {
            let (templates, sdk) = language_files(project.lang);
            files.push(("wit/eddy.wit", WIT.to_owned()));
            files.extend(templates.iter().map(|(path, text)| (*path, fill(text))));
            files.extend(sdk.iter().map(|(path, text)| (*path, (*text).to_owned())));
        }
    }
    for (path, text) in &files {
        write(dir, path, text)?;
    }
    Ok(next_steps(project))
}

/// A project file: its path in the project and its text.
type File = (&'static str, &'static str);

/// The files of a Python or JavaScript project: the plugin's templates (filled in with
/// its name) and its SDK (helper library, mock host, toolchain, build and test scripts),
/// copied as they are.
fn language_files(lang: Lang) -> (&'static [File], &'static [File]) {
    match lang {
        Lang::Rust => (&[], &[]),
        Lang::Python => (PYTHON_TEMPLATES, PYTHON_SDK),
        Lang::Js => (JS_TEMPLATES, JS_SDK),
    }
}

const JS_TEMPLATES: &[File] = &[
    ("app.js", include_str!("templates/js/app.js.tmpl")),
    ("app.test.js", include_str!("templates/js/app.test.js.tmpl")),
    ("build.sh", include_str!("templates/build.sh.tmpl")),
    ("test.sh", include_str!("templates/test.sh.tmpl")),
    ("README.md", include_str!("templates/js/README.md.tmpl")),
    (".gitignore", "plugin.wasm\nnode_modules/\n"),
];

const JS_SDK: &[File] = &[
    (
        "sdk/eddy-plugin.js",
        include_str!("../../../plugin-sdk/js/eddy-plugin.js"),
    ),
    (
        "sdk/testing.js",
        include_str!("../../../plugin-sdk/js/testing.js"),
    ),
    (
        "sdk/toolchain.sh",
        include_str!("../../../plugin-sdk/js/toolchain.sh"),
    ),
    (
        "sdk/build.sh",
        include_str!("../../../plugin-sdk/js/build.sh"),
    ),
    (
        "sdk/build-common.sh",
        include_str!("../../../plugin-sdk/build-common.sh"),
    ),
    (
        "sdk/test.sh",
        include_str!("../../../plugin-sdk/js/test.sh"),
    ),
];

const PYTHON_TEMPLATES: &[File] = &[
    ("app.py", include_str!("templates/python/app.py.tmpl")),
    (
        "test_app.py",
        include_str!("templates/python/test_app.py.tmpl"),
    ),
    ("build.sh", include_str!("templates/build.sh.tmpl")),
    ("test.sh", include_str!("templates/test.sh.tmpl")),
    ("README.md", include_str!("templates/python/README.md.tmpl")),
    (".gitignore", "plugin.wasm\n__pycache__/\n"),
];

const PYTHON_SDK: &[File] = &[
    (
        "sdk/eddy_plugin/__init__.py",
        include_str!("../../../plugin-sdk/python/eddy_plugin/__init__.py"),
    ),
    (
        "sdk/eddy_plugin/_json.py",
        include_str!("../../../plugin-sdk/python/eddy_plugin/_json.py"),
    ),
    (
        "sdk/eddy_plugin/testing.py",
        include_str!("../../../plugin-sdk/python/eddy_plugin/testing.py"),
    ),
    (
        "sdk/toolchain.sh",
        include_str!("../../../plugin-sdk/python/toolchain.sh"),
    ),
    (
        "sdk/build.sh",
        include_str!("../../../plugin-sdk/python/build.sh"),
    ),
    (
        "sdk/build-common.sh",
        include_str!("../../../plugin-sdk/build-common.sh"),
    ),
    (
        "sdk/test.sh",
        include_str!("../../../plugin-sdk/python/test.sh"),
    ),
];

/// What to run next, for the operator.
fn next_steps(project: &NewProject) -> String {
    let dir = project.dir.display();
    match project.lang {
        Lang::Rust => format!(
            "cd {dir}\n\
             rustup target add wasm32-wasip2\n\
             cargo test\n\
             cargo build --release --target wasm32-wasip2\n\
             eddy plugin test target/wasm32-wasip2/release/{}.wasm --input fixtures/input.jsonl --expect fixtures/expected.jsonl",
            project.name.replace('-', "_")
        ),
        Lang::Python | Lang::Js => format!(
            "cd {dir}\n\
             ./test.sh\n\
             ./build.sh\n\
             eddy plugin test plugin.wasm --input fixtures/input.jsonl --expect fixtures/expected.jsonl"
        ),
    }
}

fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter (e.g. `big-spenders`)"
        );
    }
    Ok(())
}

fn write(dir: &Path, path: &str, text: &str) -> Result<()> {
    let path = dir.join(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names_and_non_empty_directories() {
        assert!(check_name("big-spenders").is_ok());
        for bad in ["", "Big", "1st", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let project = NewProject {
            name: "x".into(),
            lang: Lang::Rust,
            dir: dir.path().to_owned(),
            sdk: None,
        };
        let err = create(&project).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }
}
