//! Writes the guest bindings' invocations with the contract version read from
//! `wit/eddy.wit`, so the version is written in one place (the WIT) and never copied into
//! the SDK's source: `with` mappings between worlds name interfaces with their version.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let wit_path = manifest.join("wit/eddy.wit");
    println!("cargo:rerun-if-changed={}", wit_path.display());
    let wit = std::fs::read_to_string(&wit_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit_path.display()));
    let version = wit
        .lines()
        .find_map(|l| l.trim().strip_prefix("package eddy:plugin@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .unwrap_or_else(|| {
            panic!(
                "{} has no `package eddy:plugin@VERSION;`",
                wit_path.display()
            )
        });
    // One world per exported interface, so each interface's export glue is generated
    // once: a plugin crate invokes the export macros of `lifecycle` and of its kind, and
    // wit-component unions them into the component's world (e.g. `filter-plugin`).
    // `host` is generated with `lifecycle`, `types` with `filter`; the others share them.
    let host = "crate::guest::lifecycle::eddy::plugin::host";
    let types = "crate::guest::filter::eddy::plugin::types";
    let part = |module: &str, export: &str, with: &str| {
        format!(
            r#"
/// Bindings of the `{export}` interface (and what it uses).
pub mod {module} {{
    wit_bindgen::generate!({{
        path: "wit",
        inline: "package eddy:sdk; world {export}-part {{ import eddy:plugin/host@{version}; export eddy:plugin/{export}@{version}; }}",
        world: "eddy:sdk/{export}-part",
        pub_export_macro: true,
        runtime_path: "::eddy_plugin_sdk::guest::rt",
        with: {{ {with} }},
    }});
}}
"#
        )
    };
    let shared_host = format!(r#""eddy:plugin/host@{version}": {host},"#);
    let shared_both = format!(r#"{shared_host} "eddy:plugin/types@{version}": {types},"#);
    let mut out = format!(
        "/// The plugin contract these bindings implement (from `wit/eddy.wit`).\n\
         pub const CONTRACT_VERSION: &str = {version:?};\n"
    );
    out += &part(
        "lifecycle",
        "lifecycle",
        r#""eddy:plugin/host@VERSION": generate,"#.replace("VERSION", version).as_str(),
    );
    out += &part(
        "filter",
        "filter",
        &format!(r#"{shared_host} "eddy:plugin/types@{version}": generate,"#),
    );
    out += &part("transform", "transform", &shared_both);
    out += &part("aggregate", "aggregate", &shared_both);
    out += &part("state", "state", &shared_both);
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guest_bindings.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
