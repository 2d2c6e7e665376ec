//! The shell-word lexer on arbitrary words, variable values, escape
//! characters and lexer options: `process_word`, `process_words` and
//! `process_word_with_matches` must not panic, hang or blow the stack, and
//! must agree with each other.
//!
//! Input layout: byte 0 = option bits, byte 1 = escape choice, then the word
//! and up to three variable values separated by NUL bytes.
#![no_main]

use forge_dockerfile::shell::{Lexer, ShellEnv};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let [options, escape, rest @ ..] = data else {
        return;
    };
    let escape = match escape % 4 {
        0 | 1 => '\\',
        2 => '`',
        // Any other character: the lexer must not care which.
        _ => char::from(b'!' + escape / 4 % 94),
    };
    let mut lexer = Lexer::new(escape);
    lexer.raw_quotes = options & 1 != 0;
    lexer.raw_escapes = options & 2 != 0;
    lexer.skip_process_quotes = options & 4 != 0;
    lexer.skip_unset_env = options & 8 != 0;
    // A lower limit on the work of one word than the default 16 MiB: words
    // that reach it are cut off after 256 KiB instead of seconds of work
    // under the sanitizer, so the fuzzer keeps trying many words a second.
    lexer.max_expansion = 1 << 18;

    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let word = parts.next().unwrap_or_default();
    // `a`, `b` and `c` take the values given; `e` is set and empty; the rest
    // (`$x`, `$1`, ...) are unset.
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    map.insert("e".into(), String::new());
    for (name, value) in ["a", "b", "c"].into_iter().zip(parts) {
        map.insert(name.into(), value.into());
    }
    // Or the same as an ordered list, where a later duplicate wins.
    let mut list: Vec<(String, String)> = vec![("a".into(), "shadowed".into())];
    list.extend(map.clone());
    let env: &dyn ShellEnv = if options & 16 != 0 { &list } else { &map };

    let started = Instant::now();
    let full = lexer.process_word_with_matches(word, env);
    if let Ok(full) = &full {
        assert!(
            full.words.iter().all(|w| !w.is_empty()),
            "empty word in {full:?}"
        );
        assert!(full.matched.is_disjoint(&full.unmatched));
    }
    if let Err(e) = &full {
        assert!(e.offset <= word.chars().count(), "{e:?}");
        let _ = e.to_string();
    }
    // The other entry points redo the whole expansion: compare them only when
    // it was quick.
    if started.elapsed() > Duration::from_millis(100) {
        return;
    }
    let one = lexer.process_word(word, env);
    let words = lexer.process_words(word, env);
    match (&one, &words, &full) {
        (Ok(value), Ok(words), Ok(full)) => {
            assert_eq!(value, &full.value);
            assert_eq!(words, &full.words);
        }
        (Err(a), Err(b), Err(c)) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
        _ => panic!("the three entry points disagree: {one:?} {words:?} {full:?}"),
    }
});
