//! Repair and scrub of mirrored objects take every block from a copy
//! that verifies it, mend the copies that did not, and fail only where no
//! copy verifies a block, naming it.

mod common;

use std::os::unix::fs::FileExt;

use common::{TempDir, files_named};
use rawstor::store::Store;
use rawstor::wire::Marks;
use rawstor::{CreateSpec, Instance, Options, Target};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 2 * MIB;
const BLOCK: u64 = 4096;

fn pattern() -> Vec<u8> {
    (0..SIZE).map(|i| (i / 7 % 251) as u8).collect()
}

/// A mirror over three file:// copies holding [`pattern`].
fn mirror(dirs: &[TempDir]) -> (Instance, Target) {
    let instance = Instance::new(Options::default()).unwrap();
    let location = dirs
        .iter()
        .map(|d| format!("file://{}", d.path().display()))
        .collect::<Vec<_>>()
        .join(",")
        .parse()
        .unwrap();
    let mut spec = CreateSpec::new(SIZE);
    spec.chunk_size = Some(MIB);
    let target = instance.create(&location, &spec).unwrap();
    let object = instance.open(&target).unwrap();
    object.write_at(&pattern(), 0).unwrap();
    object.close().unwrap();
    (instance, target)
}

/// Flips one byte inside block `block` of chunk 0 of the copy in `dir`.
fn flip(dir: &TempDir, block: u64) {
    let chunk = files_named(&dir.path().join("%ob"), &|n| n == "c00000000");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&chunk[0])
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, block * BLOCK + 100).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], block * BLOCK + 100)
        .unwrap();
}

/// Marks the copy in `dirs[0]` stale in the others' marks, as a write it
/// missed would.
fn mark_first_stale(dirs: &[TempDir], target: &Target) {
    let name = format!("file://{}", dirs[0].path().display());
    for dir in &dirs[1..] {
        let store = Store::open(vec![dir.path().to_path_buf()], false).unwrap();
        let object = store.open_object(target.uuid).unwrap();
        let marks = Marks {
            stale: false,
            stale_peers: vec![name.clone()],
        };
        object.set_marks(&marks, false).unwrap();
    }
}

/// What the copy in `dir` holds, read through its own target.
fn copy_of(instance: &Instance, dir: &TempDir, target: &Target) -> rawstor::Result<Vec<u8>> {
    let one: Target = format!("file://{}/{}", dir.path().display(), target.uuid)
        .parse()
        .unwrap();
    let object = instance.open(&one)?;
    let mut buf = vec![0u8; SIZE as usize];
    object.read_at(&mut buf, 0)?;
    Ok(buf)
}

fn dirs() -> Vec<TempDir> {
    ["a", "b", "c"].iter().map(|t| TempDir::new(t)).collect()
}

#[test]
fn repair_takes_each_block_from_a_copy_that_verifies_and_mends_the_others() {
    let dirs = dirs();
    let (instance, target) = mirror(&dirs);
    // The stale copy is lost; each good copy has one bad block, in
    // different places and in the same 1 MiB step.
    std::fs::write(
        files_named(&dirs[0].path().join("%ob"), &|n| n == "c00000000")[0].clone(),
        [],
    )
    .unwrap();
    flip(&dirs[1], 1);
    flip(&dirs[2], 3);
    mark_first_stale(&dirs, &target);
    assert_eq!(
        copy_of(&instance, &dirs[1], &target).unwrap_err().errno(),
        libc::EIO
    );
    let repaired = instance.repair(&target, &mut |_, _| {}).unwrap();
    assert_eq!(repaired, [format!("file://{}", dirs[0].path().display())]);
    for dir in &dirs {
        let copy = copy_of(&instance, dir, &target).unwrap();
        assert!(copy == pattern(), "{} holds the data", dir.path().display());
    }
}

#[test]
fn repair_fails_naming_a_block_no_copy_verifies() {
    let dirs = dirs();
    let (instance, target) = mirror(&dirs);
    flip(&dirs[1], 5);
    flip(&dirs[2], 5);
    mark_first_stale(&dirs, &target);
    let err = instance.repair(&target, &mut |_, _| {}).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(
        err.to_string()
            .contains("no copy verifies bytes 20480..24576"),
        "{err}"
    );
}

#[test]
fn scrub_with_repair_mends_a_step_no_copy_reads_whole() {
    let dirs = dirs();
    let (instance, target) = mirror(&dirs);
    for (dir, block) in dirs.iter().zip([2, 4, 6]) {
        flip(dir, block);
    }
    let report = instance.scrub(&target, false, &mut |_, _| {}).unwrap();
    assert!(!report.clean());
    let report = instance.scrub(&target, true, &mut |_, _| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.repaired.len(), 3, "{:?}", report.repaired);
    for dir in &dirs {
        assert!(copy_of(&instance, dir, &target).unwrap() == pattern());
    }
    assert!(
        instance
            .scrub(&target, false, &mut |_, _| {})
            .unwrap()
            .clean()
    );
}
