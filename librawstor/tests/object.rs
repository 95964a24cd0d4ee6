//! Objects on a file:// store through the Rust API: ranges, holes,
//! discard, resize, list, corruption and control-file copies.

mod common;

use std::os::unix::fs::FileExt;

use common::{TempDir, allocated_bytes, files_named};
use rawstor::store::Store;
use rawstor::{CreateSpec, Instance, Options};

const MIB: u64 = 1 << 20;

fn spec(size: u64, chunk: u64) -> CreateSpec {
    CreateSpec {
        size,
        uuid: None,
        chunk_size: Some(chunk),
        layout: None,
        piece_size: None,
    }
}

#[test]
fn io_past_the_end_fails_and_changes_nothing() {
    let dir = TempDir::new("range");
    let instance = Instance::new(Options::default()).unwrap();
    let target = instance
        .create(&dir.location(), &spec(4 * MIB, MIB))
        .unwrap();
    let object = instance.open(&target).unwrap();
    object.write_at(&[1u8; 4096], 4 * MIB - 4096).unwrap();
    let err = object.write_at(&[2u8; 8192], 4 * MIB - 4096).unwrap_err();
    assert_eq!(err.errno(), libc::ENXIO, "{err}");
    let mut buf = [0u8; 8192];
    assert_eq!(
        object
            .read_at(&mut buf, 4 * MIB - 4096)
            .unwrap_err()
            .errno(),
        libc::ENXIO
    );
    assert_eq!(
        object.read_at(&mut buf, u64::MAX - 10).unwrap_err().errno(),
        libc::ENXIO
    );
    // Nothing grew and the last block still holds the first write.
    assert_eq!(object.size(), 4 * MIB);
    object.read_at(&mut buf[..4096], 4 * MIB - 4096).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 1));
    object.read_at(&mut buf[..0], 4 * MIB).unwrap();
}

#[test]
fn data_crosses_chunks_and_survives_reopen() {
    let dir = TempDir::new("reopen");
    let target = {
        let instance = Instance::new(Options::default()).unwrap();
        let target = instance
            .create(&dir.location(), &spec(8 * MIB, 64 << 10))
            .unwrap();
        let object = instance.open(&target).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        object.write_at(&data, 60_000).unwrap();
        object.close().unwrap();
        target
    };
    let instance = Instance::new(Options::default()).unwrap();
    let object = instance.open(&target).unwrap();
    let mut back = vec![0u8; 300_000];
    object.read_at(&mut back, 60_000).unwrap();
    assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    let mut head = vec![9u8; 60_000];
    object.read_at(&mut head, 0).unwrap();
    assert!(
        head.iter().all(|&b| b == 0),
        "never-written range reads zeros"
    );
}

#[test]
fn discard_frees_space_and_reads_zeros() {
    let dir = TempDir::new("discard");
    let instance = Instance::new(Options::default()).unwrap();
    let target = instance
        .create(&dir.location(), &spec(16 * MIB, 4 * MIB))
        .unwrap();
    let object = instance.open(&target).unwrap();
    object.write_at(&vec![0xabu8; 8 * MIB as usize], 0).unwrap();
    object.flush().unwrap();
    let before = allocated_bytes(dir.path());
    object.discard(MIB, 6 * MIB).unwrap();
    object.flush().unwrap();
    let after = allocated_bytes(dir.path());
    assert!(
        before - after >= 6 * MIB - 64 * 1024,
        "freed only {} bytes",
        before - after
    );
    let mut buf = vec![1u8; 8 * MIB as usize];
    object.read_at(&mut buf, 0).unwrap();
    assert!(buf[..MIB as usize].iter().all(|&b| b == 0xab));
    assert!(buf[MIB as usize..7 * MIB as usize].iter().all(|&b| b == 0));
    assert!(buf[7 * MIB as usize..].iter().all(|&b| b == 0xab));
}

#[test]
fn block_status_follows_writes_and_discards() {
    let dir = TempDir::new("extent");
    let instance = Instance::new(Options::default()).unwrap();
    let target = instance
        .create(&dir.location(), &spec(4 * MIB, MIB))
        .unwrap();
    let object = instance.open(&target).unwrap();
    // Nothing written: one zero extent over every (missing) chunk.
    assert_eq!(object.extent(0, 4 * MIB).unwrap(), (false, 4 * MIB));
    // 8 KiB of data 4 KiB into the second chunk.
    object.write_at(&[7u8; 8192], MIB + 4096).unwrap();
    assert_eq!(object.extent(0, 4 * MIB).unwrap(), (false, MIB + 4096));
    assert_eq!(
        object.extent(MIB + 4096, 4 * MIB - MIB - 4096).unwrap(),
        (true, 8192)
    );
    assert_eq!(object.extent(MIB + 8192, 100).unwrap(), (true, 100));
    // Unaligned starts: a hole answer never covers data, nor the reverse.
    assert_eq!(object.extent(MIB + 3996, 8192).unwrap(), (false, 100));
    assert_eq!(object.extent(MIB + 4106, 8192).unwrap(), (true, 8182));
    let rest = 4 * MIB - MIB - 12288;
    assert_eq!(object.extent(MIB + 12288, rest).unwrap(), (false, rest));
    // Discarded, it reads as zeros again.
    object.discard(MIB + 4096, 8192).unwrap();
    assert_eq!(object.extent(MIB, MIB).unwrap(), (false, MIB));
    // Past the end and empty ranges are refused.
    assert_eq!(
        object.extent(4 * MIB, 4096).unwrap_err().errno(),
        libc::ENXIO
    );
    assert_eq!(object.extent(0, 0).unwrap_err().errno(), libc::EINVAL);
}

#[test]
fn resize_grows_and_shrinks_only_when_asked() {
    let dir = TempDir::new("resize");
    let instance = Instance::new(Options::default()).unwrap();
    let target = instance
        .create(&dir.location(), &spec(4 * MIB, MIB))
        .unwrap();
    let object = instance.open(&target).unwrap();
    object.write_at(&[7u8; 4096], 3 * MIB).unwrap();
    object.resize(8 * MIB, false).unwrap();
    object.write_at(&[8u8; 4096], 7 * MIB).unwrap();
    let err = object.resize(2 * MIB, false).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(object.size(), 8 * MIB);
    object.resize(2 * MIB, true).unwrap();
    assert_eq!(object.size(), 2 * MIB);
    // Growing again exposes zeros, not the data cut off before.
    object.resize(8 * MIB, false).unwrap();
    let mut buf = [1u8; 4096];
    object.read_at(&mut buf, 3 * MIB).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    object.close().unwrap();
    assert_eq!(instance.stat(&target).unwrap().size, 8 * MIB);
    assert_eq!(object_size_err(&instance, &target, 1000), libc::EINVAL);
}

fn object_size_err(instance: &Instance, target: &rawstor::Target, size: u64) -> i32 {
    instance
        .open(target)
        .unwrap()
        .resize(size, true)
        .unwrap_err()
        .errno()
}

#[test]
fn list_pages_are_sorted_and_complete() {
    let dir = TempDir::new("list");
    let instance = Instance::new(Options::default()).unwrap();
    let mut created: Vec<_> = (0..7)
        .map(|_| {
            instance
                .create(&dir.location(), &spec(MIB, MIB))
                .unwrap()
                .uuid
        })
        .collect();
    created.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = instance.list(&dir.location(), after, 3).unwrap();
        seen.extend(page.iter().map(|info| info.uuid));
        if page.len() < 3 {
            break;
        }
        after = page.last().map(|info| info.uuid);
    }
    assert_eq!(seen, created);
    instance.remove(&dir.location().target(created[2])).unwrap();
    assert_eq!(instance.list(&dir.location(), None, 100).unwrap().len(), 6);
}

#[test]
fn remove_is_refused_while_open_and_then_frees_the_object() {
    let dir = TempDir::new("remove");
    let instance = Instance::new(Options::default()).unwrap();
    let target = instance.create(&dir.location(), &spec(MIB, MIB)).unwrap();
    let object = instance.open(&target).unwrap();
    assert_eq!(instance.remove(&target).unwrap_err().errno(), libc::EBUSY);
    object.close().unwrap();
    instance.remove(&target).unwrap();
    assert_eq!(instance.open(&target).err().unwrap().errno(), libc::ENOENT);
    assert_eq!(instance.remove(&target).unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn flipped_byte_on_disk_fails_the_read_with_eio() {
    let dir = TempDir::new("flip");
    let instance = Instance::new(Options::default()).unwrap();
    let target = instance
        .create(&dir.location(), &spec(4 * MIB, MIB))
        .unwrap();
    let object = instance.open(&target).unwrap();
    object.write_at(&vec![0x5au8; 2 * MIB as usize], 0).unwrap();
    object.close().unwrap();
    let data_files = files_named(&dir.path().join("%ob"), &|name| {
        name.starts_with('c') && !name.ends_with(".crc")
    });
    let second_chunk = data_files
        .iter()
        .find(|p| p.ends_with("c00000001"))
        .expect("chunk 1 on disk");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(second_chunk)
        .unwrap();
    file.write_all_at(&[0x5b], 12_345).unwrap();
    let object = instance.open(&target).unwrap();
    let mut buf = vec![0u8; 4096];
    let err = object.read_at(&mut buf, MIB + 12_288).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.context().contains("checksum mismatch"), "{err}");
    // Neighbouring blocks still read fine.
    object.read_at(&mut buf, MIB + 16_384).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
}

#[test]
fn corrupt_control_copy_is_rewritten_from_a_good_one() {
    let a = TempDir::new("mp-a");
    let b = TempDir::new("mp-b");
    let mountpaths = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    let store = Store::open(mountpaths.clone(), true).unwrap();
    let uuid = rawstor::Uuid::now_v7();
    store.create_object(uuid, 8 * MIB, MIB).unwrap();
    let object = store.open_object(uuid).unwrap();
    object.write(0, &[3u8; 4096]).unwrap();
    drop(object);
    drop(store);
    let record = b.path().join(format!("%mt/{uuid}/object"));
    let good = std::fs::read(&record).unwrap();
    std::fs::write(&record, b"RSCF garbage").unwrap();
    let store = Store::open(mountpaths, false).unwrap();
    assert_eq!(store.stat_object(uuid).unwrap().size, 8 * MIB);
    assert_eq!(
        std::fs::read(&record).unwrap(),
        good,
        "corrupt copy rewritten"
    );
}

#[test]
fn mountpath_of_another_store_is_refused() {
    let a = TempDir::new("own");
    let b = TempDir::new("foreign");
    Store::open(vec![a.path().to_path_buf()], true).unwrap();
    Store::open(vec![b.path().to_path_buf()], true).unwrap();
    let err = Store::open(vec![a.path().to_path_buf(), b.path().to_path_buf()], true)
        .err()
        .unwrap();
    assert_eq!(err.errno(), libc::EEXIST);
    assert!(err.context().contains("refusing to mix stores"), "{err}");
}

#[test]
fn chunks_spread_over_mountpaths_and_read_back() {
    let mps: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("spread{i}")))
        .collect();
    let store = Store::open(mps.iter().map(|d| d.path().to_path_buf()).collect(), true).unwrap();
    let uuid = rawstor::Uuid::now_v7();
    store.create_object(uuid, 32 * MIB, MIB).unwrap();
    let object = store.open_object(uuid).unwrap();
    for i in 0..32u64 {
        object.write(i * MIB, &[i as u8; 4096]).unwrap();
    }
    for mp in &mps {
        let chunks = files_named(&mp.path().join("%ob"), &|n| {
            n.starts_with('c') && !n.ends_with(".crc")
        });
        assert!(
            chunks.len() >= 3,
            "{} holds {} chunks",
            mp.path().display(),
            chunks.len()
        );
    }
    let mut buf = [0u8; 4096];
    for i in 0..32u64 {
        object.read(i * MIB, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == i as u8));
    }
}

#[test]
fn missing_store_and_bad_sizes_are_clear_errors() {
    let instance = Instance::new(Options::default()).unwrap();
    let nowhere: rawstor::Location = "file:///nonexistent/rawstor-store".parse().unwrap();
    let err = instance.list(&nowhere, None, 10).unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    let dir = TempDir::new("sizes");
    for (size, chunk) in [(0, MIB), (1000, MIB), (MIB, 3000), (MIB, 1 << 31)] {
        let err = instance
            .create(&dir.location(), &spec(size, chunk))
            .unwrap_err();
        assert_eq!(
            err.errno(),
            libc::EINVAL,
            "size {size} chunk {chunk}: {err}"
        );
    }
    // Port 1 on loopback: no rawstor-mdt there either.
    let mdt: rawstor::Location = "mdt://127.0.0.1:1".parse().unwrap();
    let err = instance.create(&mdt, &spec(MIB, MIB)).unwrap_err();
    assert_eq!(err.errno(), libc::ECONNREFUSED, "{err}");
    assert!(
        err.to_string()
            .starts_with("mdt://127.0.0.1:1: cannot connect"),
        "{err}"
    );
    // Port 1 on loopback: nothing listens there.
    let ost: rawstor::Location = "ost://127.0.0.1:1".parse().unwrap();
    let err = instance.create(&ost, &spec(MIB, MIB)).unwrap_err();
    assert_eq!(err.errno(), libc::ECONNREFUSED, "{err}");
}

#[test]
fn a_raised_fence_refuses_older_lease_epochs_and_survives_reopen() {
    let dir = TempDir::new("fence");
    let store = Store::open(vec![dir.path().to_path_buf()], true).unwrap();
    let uuid = rawstor::Uuid::now_v7();
    store.create_object(uuid, 8 * MIB, MIB).unwrap();
    let object = store.open_object(uuid).unwrap();
    // No fence yet: every epoch is admitted.
    drop(object.admit(3).unwrap());
    assert_eq!(object.fence(5).unwrap(), 5);
    // A fence never goes down.
    assert_eq!(object.fence(4).unwrap(), 5);
    let err = object.admit(4).unwrap_err();
    assert_eq!(err.errno(), libc::ENOLCK);
    assert!(err.context().contains("another writer took over"), "{err}");
    drop(object.admit(5).unwrap());
    drop(object.admit(6).unwrap());
    // Changes made without a lease (epoch 0) are not writers' changes.
    drop(object.admit(0).unwrap());
    drop(object);
    drop(store);
    let store = Store::open(vec![dir.path().to_path_buf()], false).unwrap();
    let object = store.open_object(uuid).unwrap();
    assert_eq!(object.admit(4).unwrap_err().errno(), libc::ENOLCK);
    // Marks and size changes keep the fence.
    object.resize(16 * MIB, false).unwrap();
    drop(object);
    drop(store);
    let store = Store::open(vec![dir.path().to_path_buf()], false).unwrap();
    let object = store.open_object(uuid).unwrap();
    assert_eq!(object.admit(4).unwrap_err().errno(), libc::ENOLCK);
    assert_eq!(object.fence(0).unwrap(), 5);
}
