//! Image references: `Reference::parse` on arbitrary text must not panic, and what it
//! accepts must print back to a reference that parses to the same value (docker's
//! normalisation is idempotent).
#![no_main]

use forge_oci::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(text) {
        let printed = r.to_string();
        let again = Reference::parse(&printed).expect("a printed reference parses");
        assert_eq!(again, r, "{text:?} -> {printed:?}");
        let _ = r.familiar();
    }
});
