//! Fuzzes the profile parser and everything after it: any input must either be rejected with
//! an error or parse, check, compile and round-trip without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden::profile::{check, compile, seccomp, Profile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Profile::from_json(text) {
        let _ = check(&p);
        let _ = compile(&p);
        // Whatever is accepted must serialize back to something that parses to the same value.
        let s = serde_json::to_string(&p).expect("serialize");
        let q = Profile::from_json(&s).expect("re-parse of a serialized profile");
        assert_eq!(p, q);
    }
    if let Ok(sp) = serde_json::from_str::<seccomp::SeccompProfile>(text) {
        let _ = seccomp::convert(&sp, &seccomp::ImportOptions::host());
    }
});
