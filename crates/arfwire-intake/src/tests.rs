use std::fs;
use std::path::{Path, PathBuf};

use crate::{IntakeError, Item, Origin, WalkOptions, walk, walk_with};

const MESSAGE_A: &[u8] = b"From: a@example.com\nSubject: a\n\nbody a\n";
const MESSAGE_B: &[u8] = b"From: b@example.com\nSubject: b\n\nbody b\n";

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, bytes).expect("write test file");
}

fn collect(paths: &[PathBuf]) -> (Vec<Item>, Vec<IntakeError>) {
    collect_with(paths, WalkOptions::default())
}

fn collect_with(paths: &[PathBuf], options: WalkOptions) -> (Vec<Item>, Vec<IntakeError>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for result in walk_with(paths.iter().cloned(), options) {
        match result {
            Ok(item) => items.push(item),
            Err(error) => errors.push(error),
        }
    }
    (items, errors)
}

fn sha256_of(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn ok_items(paths: &[PathBuf]) -> Vec<Item> {
    let (items, errors) = collect(paths);
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
    items
}

fn relative(root: &Path, item: &Item) -> String {
    item.origin
        .path()
        .strip_prefix(root)
        .unwrap_or(item.origin.path())
        .to_string_lossy()
        .replace('\\', "/")
        + &item
            .origin
            .mbox_index()
            .map(|i| format!("#{i}"))
            .unwrap_or_default()
}

#[test]
fn a_single_file_is_one_item_with_its_bytes_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.txt");
    write(&path, MESSAGE_A);
    let items = ok_items(std::slice::from_ref(&path));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].origin, Origin::File { path });
    assert_eq!(items[0].bytes, MESSAGE_A);
    assert!(items[0].modified.is_some());
}

#[test]
fn an_eml_beginning_with_one_from_line_is_a_file_not_an_mbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = [
        b"From sender@example.com Mon Jan  1 00:00:00 2024\n".as_slice(),
        MESSAGE_A,
    ]
    .concat();
    let eml = dir.path().join("one.eml");
    write(&eml, &bytes);
    // Without the extension, one From line is not enough to make an mbox either.
    let plain = dir.path().join("one");
    write(&plain, &bytes);
    let items = ok_items(&[eml.clone(), plain.clone()]);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].origin, Origin::File { path: eml });
    assert_eq!(items[0].bytes, bytes);
    assert_eq!(items[1].origin, Origin::File { path: plain });
    assert_eq!(items[1].bytes, bytes);
}

#[test]
fn an_eml_quoting_a_message_with_its_own_from_line_stays_one_message() {
    // A bounce that pastes the bounced message, mbox From line and all.
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = b"From MAILER-DAEMON  Sat Oct  4 08:00:09 2025\r\nFrom: postmaster@example.de\r\n\
Subject: bounce\r\n\r\nbounced:\r\n\r\nFrom x@example.net  Sat Oct  4 08:00:07 2025\r\n\
From: x@example.net\r\n\r\nhello\r\n";
    let eml = dir.path().join("bounce.eml");
    write(&eml, bytes);
    let items = ok_items(&[eml]);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].bytes, bytes);
}

#[test]
fn a_directory_is_walked_recursively_in_sorted_order_skipping_hidden_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(&root.join("b.eml"), MESSAGE_B);
    write(&root.join("a.eml"), MESSAGE_A);
    write(&root.join("sub/z.eml"), MESSAGE_A);
    write(&root.join("sub/inner/m.eml"), MESSAGE_B);
    write(&root.join("c/tmp/not-a-maildir.eml"), MESSAGE_A);
    write(&root.join(".hidden.eml"), MESSAGE_A);
    write(&root.join(".git/objects/x"), MESSAGE_A);
    write(&root.join("sub/.DS_Store"), b"junk");
    fs::create_dir_all(root.join("empty")).expect("mkdir");

    let items = ok_items(&[root.to_path_buf()]);
    let names: Vec<String> = items.iter().map(|i| relative(root, i)).collect();
    assert_eq!(
        names,
        [
            "a.eml",
            "b.eml",
            "c/tmp/not-a-maildir.eml",
            "sub/inner/m.eml",
            "sub/z.eml"
        ]
    );
    assert!(
        items
            .iter()
            .all(|i| matches!(i.origin, Origin::File { .. }))
    );

    // The same tree walked twice gives the same order.
    let again: Vec<String> = ok_items(&[root.to_path_buf()])
        .iter()
        .map(|i| relative(root, i))
        .collect();
    assert_eq!(names, again);
}

#[test]
fn explicitly_named_hidden_paths_are_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hidden = dir.path().join(".Junk/report.eml");
    write(&hidden, MESSAGE_A);
    let items = ok_items(&[dir.path().join(".Junk")]);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].origin, Origin::File { path: hidden });
}

fn make_maildir(root: &Path) {
    write(&root.join("cur/1700000000.M1P1.host:2,S"), MESSAGE_A);
    write(&root.join("new/1700000001.M2P2.host"), MESSAGE_B);
    write(&root.join("new/.hidden"), MESSAGE_B);
    write(&root.join("tmp/1700000002.M3P3.host"), b"half-written");
    write(&root.join("dovecot-uidlist"), b"3 V1 N4\n");
    write(&root.join("maildirfolder"), b"");
}

#[test]
fn a_maildir_yields_cur_and_new_and_skips_tmp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let maildir = dir.path().join("Maildir");
    make_maildir(&maildir);
    let items = ok_items(std::slice::from_ref(&maildir));
    let names: Vec<String> = items.iter().map(|i| relative(&maildir, i)).collect();
    assert_eq!(
        names,
        ["cur/1700000000.M1P1.host:2,S", "new/1700000001.M2P2.host"]
    );
    assert!(
        items
            .iter()
            .all(|i| matches!(i.origin, Origin::Maildir { .. }))
    );
    assert_eq!(items[0].bytes, MESSAGE_A);
    assert_eq!(items[1].bytes, MESSAGE_B);
}

#[test]
fn a_maildir_inside_a_directory_tree_is_read_as_a_maildir() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_maildir(&dir.path().join("mail/junk"));
    write(&dir.path().join("loose.eml"), MESSAGE_A);
    let items = ok_items(&[dir.path().to_path_buf()]);
    let names: Vec<String> = items.iter().map(|i| relative(dir.path(), i)).collect();
    assert_eq!(
        names,
        [
            "loose.eml",
            "mail/junk/cur/1700000000.M1P1.host:2,S",
            "mail/junk/new/1700000001.M2P2.host"
        ]
    );
    assert!(matches!(items[0].origin, Origin::File { .. }));
    assert!(matches!(items[1].origin, Origin::Maildir { .. }));
}

#[test]
fn naming_a_maildir_subfolder_reads_it_as_maildir() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_maildir(dir.path());
    let items = ok_items(&[dir.path().join("new")]);
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0].origin, Origin::Maildir { .. }));
}

#[test]
fn a_maildir_message_starting_like_an_mbox_is_one_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_maildir(dir.path());
    let bytes = [
        b"From a@example.com Mon Jan  1 00:00:00 2024\n".as_slice(),
        MESSAGE_A,
        b"\nFrom b@example.com Mon Jan  1 00:00:00 2024\n",
        MESSAGE_B,
    ]
    .concat();
    write(&dir.path().join("cur/2"), &bytes);
    let items = ok_items(&[dir.path().to_path_buf()]);
    assert_eq!(items.len(), 3);
    assert_eq!(items[1].bytes, bytes);
}

fn three_message_mbox() -> Vec<u8> {
    [
        b"From a@example.com Mon Jan  1 00:00:00 2024\n".as_slice(),
        MESSAGE_A,
        b"\n",
        b"From b@example.com Mon Jan  1 00:00:01 2024\n",
        MESSAGE_B,
        b"\n",
        b"From MAILER-DAEMON Mon Jan  1 00:00:02 2024\n",
        b"Subject: third\n\nno blank line follows this one\n",
    ]
    .concat()
}

#[test]
fn an_mbox_with_three_messages_yields_three_items_with_indexes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("junk.mbox");
    write(&path, &three_message_mbox());
    let items = ok_items(std::slice::from_ref(&path));
    assert_eq!(items.len(), 3);
    for (index, item) in items.iter().enumerate() {
        assert_eq!(
            item.origin,
            Origin::Mbox {
                path: path.clone(),
                index: index as u64
            }
        );
        assert!(item.modified.is_some());
    }
    assert_eq!(items[0].bytes, MESSAGE_A);
    assert_eq!(items[1].bytes, MESSAGE_B);
    assert_eq!(
        items[2].bytes,
        b"Subject: third\n\nno blank line follows this one\n"
    );
}

#[test]
fn an_mbox_is_recognised_by_content_without_an_extension() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("inbox");
    write(&path, &three_message_mbox());
    let items = ok_items(&[path]);
    assert_eq!(items.len(), 3);
    assert_eq!(items[2].origin.mbox_index(), Some(2));
    assert_eq!(items[1].bytes, MESSAGE_B);
}

#[test]
fn an_mbox_named_so_with_one_message_is_still_an_mbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("single.mbx");
    write(
        &path,
        &[
            b"From a@example.com Mon Jan  1 00:00:00 2024\n".as_slice(),
            MESSAGE_A,
        ]
        .concat(),
    );
    let items = ok_items(std::slice::from_ref(&path));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].origin, Origin::Mbox { path, index: 0 });
    assert_eq!(items[0].bytes, MESSAGE_A);
}

#[test]
fn mboxrd_quoting_is_undone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("quoted.mbox");
    let mbox = b"From a@example.com Mon Jan  1 00:00:00 2024\n\
Subject: quoting\n\
\n\
>From the start of a line\n\
>>From twice quoted\n\
>>>From three times\n\
> From is not quoting\n\
>Fromage is not quoting\n\
\x20>From after a space stays\n\
\n\
From b@example.com Mon Jan  1 00:00:01 2024\n\
Subject: second\n\
\n\
>From here too\n";
    write(&path, mbox);
    let items = ok_items(&[path]);
    assert_eq!(items.len(), 2);
    assert_eq!(
        String::from_utf8_lossy(&items[0].bytes),
        "Subject: quoting\n\
\n\
From the start of a line\n\
>From twice quoted\n\
>>From three times\n\
> From is not quoting\n\
>Fromage is not quoting\n\
\x20>From after a space stays\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&items[1].bytes),
        "Subject: second\n\nFrom here too\n"
    );
}

#[test]
fn crlf_mbox_keeps_crlf_and_drops_only_the_framing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crlf.mbox");
    let mbox = b"From a Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\nbody\r\n\r\n\
From b Mon Jan  1 00:00:00 2024\r\nSubject: two\r\n\r\n>From body\r\n\r\n";
    write(&path, mbox);
    let items = ok_items(&[path]);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].bytes, b"Subject: one\r\n\r\nbody\r\n");
    assert_eq!(items[1].bytes, b"Subject: two\r\n\r\nFrom body\r\n");
}

#[test]
fn text_before_the_first_separator_is_not_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.mbox");
    write(
        &path,
        &[
            MESSAGE_A,
            b"\nFrom b Mon Jan  1 00:00:00 2024\n".as_slice(),
            MESSAGE_B,
        ]
        .concat(),
    );
    let items = ok_items(&[path]);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].bytes, MESSAGE_A);
    assert_eq!(items[1].bytes, MESSAGE_B);
    assert_eq!(items[1].origin.mbox_index(), Some(1));
}

#[test]
fn an_empty_mbox_yields_nothing_and_an_empty_file_yields_an_empty_item() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(&dir.path().join("empty.mbox"), b"");
    write(&dir.path().join("empty.eml"), b"");
    let items = ok_items(&[dir.path().to_path_buf()]);
    assert_eq!(items.len(), 1);
    assert!(items[0].origin.path().ends_with("empty.eml"));
    assert!(items[0].bytes.is_empty());
}

#[test]
fn a_file_over_the_cap_is_an_error_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(&dir.path().join("a-big.eml"), &[b'x'; 101]);
    write(&dir.path().join("b-fits.eml"), &[b'x'; 100]);
    let (items, errors) = collect_with(
        &[dir.path().to_path_buf()],
        WalkOptions {
            max_file_bytes: 100,
        },
    );
    assert_eq!(items.len(), 1);
    assert!(items[0].origin.path().ends_with("b-fits.eml"));
    assert_eq!(errors.len(), 1);
    match &errors[0] {
        IntakeError::TooLarge {
            origin,
            size,
            limit,
            modified,
            sha256,
        } => {
            assert!(origin.path().ends_with("a-big.eml"));
            assert_eq!((*size, *limit), (101, 100));
            assert!(modified.is_some());
            assert_eq!(*sha256, Some(sha256_of(&[b'x'; 101])));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let text = errors[0].to_string();
    assert!(
        text.contains("a-big.eml") && text.contains("too large"),
        "{text}"
    );
}

#[test]
fn an_mbox_message_over_the_cap_is_an_error_and_the_others_are_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.mbox");
    let big_body = [[b'y'; 49].as_slice(), b"\n"].concat().repeat(6);
    let mbox = [
        b"From a Mon Jan  1 00:00:00 2024\n".as_slice(),
        MESSAGE_A,
        b"\nFrom b Mon Jan  1 00:00:00 2024\n",
        b"Subject: big\n\n",
        &big_body,
        b"\nFrom c Mon Jan  1 00:00:00 2024\n",
        MESSAGE_B,
    ]
    .concat();
    write(&path, &mbox);
    // The whole file is larger than the cap, too: it is still split, as an mbox.
    assert!(mbox.len() > 200);
    let (items, errors) = collect_with(
        std::slice::from_ref(&path),
        WalkOptions {
            max_file_bytes: 200,
        },
    );
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].bytes, MESSAGE_A);
    assert_eq!(items[1].bytes, MESSAGE_B);
    assert_eq!(items[1].origin.mbox_index(), Some(2));
    assert_eq!(errors.len(), 1);
    let expected = [b"Subject: big\n\n".as_slice(), &big_body].concat();
    match &errors[0] {
        IntakeError::TooLarge {
            origin: Origin::Mbox { index: 1, .. },
            size,
            limit: 200,
            sha256,
            ..
        } => {
            assert_eq!(*size, expected.len() as u64);
            assert_eq!(*sha256, Some(sha256_of(&expected)));
        }
        other => panic!("expected TooLarge for message 1, got {other:?}"),
    }
}

#[test]
fn an_unnamed_mbox_over_the_cap_is_detected_by_streaming() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("archive");
    write(&path, &three_message_mbox());
    let (items, errors) = collect_with(&[path], WalkOptions { max_file_bytes: 60 });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(items.len(), 3);
}

#[test]
fn a_message_exactly_at_the_cap_fits_with_its_framing_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("exact.mbox");
    let mbox = [
        b"From a Mon Jan  1 00:00:00 2024\n".as_slice(),
        MESSAGE_A,
        b"\r\nFrom b Mon Jan  1 00:00:00 2024\n",
        MESSAGE_A,
    ]
    .concat();
    write(&path, &mbox);
    let (items, errors) = collect_with(
        &[path],
        WalkOptions {
            max_file_bytes: MESSAGE_A.len() as u64,
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].bytes, MESSAGE_A);
}

#[test]
fn a_missing_path_is_an_error_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.eml");
    write(&good, MESSAGE_A);
    let missing = dir.path().join("missing.eml");
    let (items, errors) = collect(&[missing.clone(), good.clone()]);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].origin, Origin::File { path: good });
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path(), missing);
    assert!(!errors[0].is_retryable());
    let text = errors[0].to_string();
    assert!(
        text.starts_with("cannot inspect ") && text.contains("missing.eml"),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
fn a_dangling_link_in_a_directory_is_an_error_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(&dir.path().join("a.eml"), MESSAGE_A);
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("b.eml"))
        .expect("symlink");
    write(&dir.path().join("c.eml"), MESSAGE_B);
    let (items, errors) = collect(&[dir.path().to_path_buf()]);
    assert_eq!(items.len(), 2);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].path().ends_with("b.eml"));
}

#[cfg(unix)]
#[test]
fn a_directory_link_loop_is_walked_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(&dir.path().join("sub/a.eml"), MESSAGE_A);
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/loop")).expect("symlink");
    let items = ok_items(&[dir.path().to_path_buf()]);
    assert_eq!(items.len(), 1);
}

#[test]
fn walk_accepts_any_path_like_arguments() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(&dir.path().join("a.eml"), MESSAGE_A);
    let as_str = dir.path().join("a.eml").to_string_lossy().into_owned();
    assert_eq!(walk([as_str.as_str()]).count(), 1);
    assert_eq!(walk(vec![dir.path().join("a.eml")]).count(), 1);
}

#[test]
fn an_oversized_mbox_message_is_hashed_as_it_would_have_been_yielded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hash.mbox");
    // Blank lines after the point where the cap is crossed, quoted From lines among them,
    // CRLF endings, and the framing blank line at the end.
    let mut message = b"Subject: long\r\n\r\n".to_vec();
    for n in 0..20 {
        message.extend_from_slice(format!("line {n}\r\n\r\n").as_bytes());
    }
    message.extend_from_slice(b"\r\n\r\n>From quoted\r\nlast\r\n");
    let mut quoted = message.clone();
    let at = quoted
        .windows(6)
        .position(|w| w == b">From ")
        .expect("the quoted line");
    quoted.insert(at, b'>');
    let mbox = [
        b"From a Mon Jan  1 00:00:00 2024\r\n".as_slice(),
        &quoted,
        b"\r\nFrom b Mon Jan  1 00:00:00 2024\r\n",
        MESSAGE_A,
    ]
    .concat();
    write(&path, &mbox);
    let (items, errors) = collect_with(&[path], WalkOptions { max_file_bytes: 50 });
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].bytes, MESSAGE_A);
    match &errors[..] {
        [IntakeError::TooLarge { size, sha256, .. }] => {
            assert_eq!(*size, message.len() as u64);
            assert_eq!(*sha256, Some(sha256_of(&message)));
        }
        other => panic!("expected one TooLarge, got {other:?}"),
    }
}

#[test]
fn a_line_longer_than_the_cap_leaves_the_hash_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("line.mbox");
    let mbox = [
        b"From a Mon Jan  1 00:00:00 2024\n".as_slice(),
        b"Subject: one long line\n\n",
        &vec![b'z'; 500],
        b"\n",
    ]
    .concat();
    write(&path, &mbox);
    let (items, errors) = collect_with(
        &[path],
        WalkOptions {
            max_file_bytes: 100,
        },
    );
    assert!(items.is_empty());
    assert!(matches!(
        &errors[..],
        [IntakeError::TooLarge {
            size: 525,
            sha256: None,
            ..
        }]
    ));
}
