//! The configuration loaders of the OP and the marketplace on any TOML file: an error or a
//! configuration that survives its own round trip, never a panic. Keys naming a file
//! (`*_file`) are taken out first: the loader reads them, and a fuzzer must not make it
//! read `/dev/zero`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toml::{Table, Value};

fn without_files(table: &mut Table) {
    table.retain(|key, _| !key.ends_with("_file"));
    for (_, value) in table.iter_mut() {
        if let Value::Table(inner) = value {
            without_files(inner);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut table) = text.parse::<Table>() else {
        return;
    };
    without_files(&mut table);
    if let Ok(config) = tobira_auth::Config::from_layers(Some(table.clone()), &[]) {
        let again = tobira_auth::Config::from_layers(Some(config.to_table()), &[])
            .expect("a loaded configuration loads again");
        assert_eq!(again, config);
    }
    // The same file as the marketplace's: its own keys, its own errors.
    let _ = tobira_marketplace::config::Config::from_layers(Some(table), &[]);
});
