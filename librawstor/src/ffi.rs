//! The C ABI. Conventions (README, "C API"):
//!
//! * opaque handles with `_new`/`_free` or `_open`/`_close` pairs;
//! * results are `0` (or a count) on success and a negative errno on
//!   failure; `rawstor_strerror` describes an errno and
//!   `rawstor_last_error` gives the calling thread's last failure in full;
//! * out-parameters last; nothing is changed on failure;
//! * no panic crosses the boundary: every body runs in [`call`].

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::client::{CreateSpec, Instance, Options};
use crate::error::{Error, Result};
use crate::object::Object;
use crate::queue::{Cqe, Queue, Sqe};
use crate::uri::{Location, Target};
use crate::uuid::Uuid;

/// Longest target string, with its terminating NUL.
pub const RAWSTOR_TARGET_MAX: usize = 4096;
/// Room for a UUID's text and its NUL in `rawstor_object_info`.
pub const RAWSTOR_UUID_BUF: usize = 40;
/// Room for any layout text of `rawstor_target_layout` and its NUL
/// (`"replicas:"` and 20 digits at most).
pub const RAWSTOR_LAYOUT_MAX: usize = 32;
/// `rawstor_object_resize` flag: allow the object to shrink.
pub const RAWSTOR_RESIZE_SHRINK: u32 = 1;
/// Bytes covered by one checksum; object sizes are multiples of it.
pub const RAWSTOR_BLOCK_SIZE: u32 = 4096;
/// Chunk size of objects created with `chunk_size` 0 (64 MiB).
pub const RAWSTOR_CHUNK_SIZE_DEFAULT: u64 = 67_108_864;
/// Smallest chunk size (64 KiB).
pub const RAWSTOR_CHUNK_SIZE_MIN: u64 = 65_536;
/// Largest chunk size (1 GiB).
pub const RAWSTOR_CHUNK_SIZE_MAX: u64 = 1_073_741_824;
/// Largest object size (256 TiB).
pub const RAWSTOR_OBJECT_SIZE_MAX: u64 = 281_474_976_710_656;

// The C constants are literals (cbindgen copies expressions verbatim and
// `1 << 48` is an int in C); keep them equal to the store's limits.
const _: () = assert!(RAWSTOR_BLOCK_SIZE as u64 == crate::store::BLOCK_SIZE);
const _: () = assert!(RAWSTOR_CHUNK_SIZE_DEFAULT == crate::store::DEFAULT_CHUNK_SIZE);
const _: () = assert!(RAWSTOR_CHUNK_SIZE_MIN == crate::store::MIN_CHUNK_SIZE);
const _: () = assert!(RAWSTOR_CHUNK_SIZE_MAX == crate::store::MAX_CHUNK_SIZE);
const _: () = assert!(RAWSTOR_OBJECT_SIZE_MAX == crate::store::MAX_OBJECT_SIZE);
const _: () = assert!(RAWSTOR_UUID_BUF > crate::uuid::UUID_TEXT_LEN);

/// What to create; zero `chunk_size` and NULL `uuid` take defaults.
#[repr(C)]
pub struct rawstor_create_spec {
    /// Size in bytes, a non-zero multiple of 4096.
    pub size: u64,
    /// Chunk size in bytes (a power of two), 0 for the default.
    pub chunk_size: u64,
    /// UUID text to use, NULL for a new version-7 UUID.
    pub uuid: *const c_char,
}

/// An object's identity, size and layout.
#[repr(C)]
pub struct rawstor_object_info {
    /// UUID text, NUL-terminated.
    pub uuid: [c_char; RAWSTOR_UUID_BUF],
    /// Size in bytes.
    pub size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Checksum block size in bytes.
    pub block_size: u64,
}

impl From<&crate::store::ObjectInfo> for rawstor_object_info {
    fn from(info: &crate::store::ObjectInfo) -> Self {
        let mut uuid = [0 as c_char; RAWSTOR_UUID_BUF];
        for (dst, src) in uuid.iter_mut().zip(info.uuid.to_string().bytes()) {
            *dst = src as c_char;
        }
        Self {
            uuid,
            size: info.size,
            chunk_size: info.chunk_size,
            block_size: info.block_size,
        }
    }
}

const _: () = assert!(std::mem::size_of::<rawstor_object_info>() == 64);
const _: () = assert!(std::mem::size_of::<Options>() == 20);

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).expect("NULs replaced");
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// Runs an exported function's body: errors become negative errnos,
/// panics become `-EIO`, and both are kept for `rawstor_last_error`.
fn call(body: impl FnOnce() -> Result<i64>) -> i64 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => {
            set_last_error(&err.to_string());
            -i64::from(err.errno())
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(&format!("internal error (panic): {what}"));
            -i64::from(libc::EIO)
        }
    }
}

fn call_int(body: impl FnOnce() -> Result<i64>) -> c_int {
    call(body) as c_int
}

/// # Safety
///
/// `ptr` is null or points to a live `T`.
unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: per the function's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

/// # Safety
///
/// `ptr` is null or points to a live, unaliased `T`.
unsafe fn arg_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: per the function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| Error::invalid(format!("{name} is NULL")))
}

/// # Safety
///
/// `ptr` is null or points to a NUL-terminated string.
unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    // SAFETY: per the function's contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{name} is not UTF-8")))
}

/// The description of an errno (the sign is ignored); never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn rawstor_strerror(errnum: c_int) -> *const c_char {
    crate::error::strerror_c(errnum).as_ptr()
}

/// The calling thread's last failure, in full ("bad target '...': ...").
/// Valid until the thread's next failing call; never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn rawstor_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// The library version, e.g. "0.1.0".
#[unsafe(no_mangle)]
pub extern "C" fn rawstor_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// Fills `options` with defaults overridden by `RAWSTOR_OPTS_*`
/// environment variables.
///
/// # Safety
///
/// `options` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_options_init(options: *mut Options) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes NULL or a writable options struct.
        let out = unsafe { arg_mut(options, "options") }?;
        *out = Options::from_env()?;
        Ok(0)
    })
}

/// Starts an instance; `options` may be NULL for defaults.
///
/// # Safety
///
/// `options` is NULL or readable; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_new(options: *const Options, out: *mut *mut Instance) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes NULL or a readable options struct.
        let options = match unsafe { options.as_ref() } {
            Some(options) => *options,
            None => Options::from_env()?,
        };
        // SAFETY: the caller passes a writable pointer.
        let out = unsafe { arg_mut(out, "out") }?;
        *out = Box::into_raw(Box::new(Instance::new(options)?));
        Ok(0)
    })
}

/// Stops an instance. Objects and queues it made stay usable until
/// freed; the event loop ends with the last of them.
///
/// # Safety
///
/// `instance` is NULL or from `rawstor_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_free(instance: *mut Instance) {
    if !instance.is_null() {
        // SAFETY: per the contract, it came from Box::into_raw.
        drop(unsafe { Box::from_raw(instance) });
    }
}

/// Creates an object at `location` and writes its target (NUL-terminated)
/// into `target`. Returns the target's length; `-ERANGE` if
/// `target_len` is too small (nothing is created then). An object created
/// on mdt:// is `replicas:3`; see [`rawstor_object_create_layout`].
///
/// # Safety
///
/// Pointers are valid; `target` has room for `target_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_create(
    instance: *const Instance,
    location: *const c_char,
    spec: *const rawstor_create_spec,
    target: *mut c_char,
    target_len: usize,
) -> c_int {
    // SAFETY: per the contract, and no layout.
    unsafe {
        rawstor_object_create_layout(
            instance,
            location,
            spec,
            std::ptr::null(),
            target,
            target_len,
        )
    }
}

/// [`rawstor_object_create`] with the redundancy of an object that a
/// rawstor-mdt places: `layout` is `"replicas:N"` or `"ec:K+M"` (`NULL`
/// for `replicas:3`). Other locations take no layout (`-EINVAL`): a comma
/// list of locations mirrors.
///
/// # Safety
///
/// Pointers are valid (`layout` may be NULL); `target` has room for
/// `target_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_create_layout(
    instance: *const Instance,
    location: *const c_char,
    spec: *const rawstor_create_spec,
    layout: *const c_char,
    target: *mut c_char,
    target_len: usize,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (instance, location, spec) = unsafe {
            (
                arg(instance, "instance")?,
                arg_str(location, "location")?,
                arg(spec, "spec")?,
            )
        };
        if target.is_null() {
            return Err(Error::invalid("target buffer is NULL"));
        }
        let layout = if layout.is_null() {
            None
        } else {
            // SAFETY: non-null, NUL-terminated per the contract.
            Some(unsafe { arg_str(layout, "layout") }?.parse()?)
        };
        let location: Location = location.parse()?;
        let uuid = if spec.uuid.is_null() {
            Uuid::now_v7()
        } else {
            // SAFETY: non-null, NUL-terminated per the contract.
            crate::uuid::parse(unsafe { arg_str(spec.uuid, "spec.uuid") }?)?
        };
        let text = location.target(uuid).to_string();
        check_room(&text, target_len, "target")?;
        let chunk_size = (spec.chunk_size != 0).then_some(spec.chunk_size);
        instance.create(
            &location,
            &CreateSpec {
                size: spec.size,
                uuid: Some(uuid),
                chunk_size,
                layout,
                piece_size: None,
            },
        )?;
        // SAFETY: checked above that `target` holds `text` and a NUL.
        unsafe { copy_out(&text, target) };
        Ok(text.len() as i64)
    })
}

/// Checks that a buffer of `len` bytes holds `text` and a NUL.
fn check_room(text: &str, len: usize, what: &str) -> Result<()> {
    if text.len() + 1 > len {
        return Err(Error::new(
            libc::ERANGE,
            format!(
                "{what} buffer of {len} bytes is too small for {} bytes",
                text.len() + 1
            ),
        ));
    }
    Ok(())
}

/// Copies `text` and a NUL to `out`.
///
/// # Safety
///
/// `out` is writable for `text.len() + 1` bytes.
unsafe fn copy_out(text: &str, out: *mut c_char) {
    // SAFETY: per the contract.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), out, text.len());
        *out.add(text.len()) = 0;
    }
}

/// Splits a target into its location (written to `location`) and its
/// UUID (written to `uuid`, which has room for `RAWSTOR_UUID_BUF` bytes).
/// `-EINVAL` if `target` is not a target (a location has no UUID);
/// `-ERANGE` if `location_len` is too small. Nothing is written on failure.
///
/// # Safety
///
/// Pointers are valid; `location` has room for `location_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_target_split(
    target: *const c_char,
    location: *mut c_char,
    location_len: usize,
    uuid: *mut c_char,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a valid string.
        let target: Target = unsafe { arg_str(target, "target") }?.parse()?;
        if location.is_null() || uuid.is_null() {
            return Err(Error::invalid("location or uuid buffer is NULL"));
        }
        let text = target.location.to_string();
        check_room(&text, location_len, "location")?;
        let id = target.uuid.to_string();
        // SAFETY: room checked above; `uuid` holds RAWSTOR_UUID_BUF bytes.
        unsafe {
            copy_out(&text, location);
            copy_out(&id, uuid);
        }
        Ok(0)
    })
}

/// Writes how the object at `target` is kept redundant into `layout`
/// (NUL-terminated): `"replicas:N"` or `"ec:K+M"`. On mdt:// that is the
/// layout the MDT recorded; a comma list of N locations is `replicas:N`,
/// one location `replicas:1`. Returns the text's length; `-ENOENT` when
/// there is no such object, `-ERANGE` when `layout_len` is too small
/// (`RAWSTOR_LAYOUT_MAX` always suffices).
///
/// # Safety
///
/// Pointers are valid; `layout` has room for `layout_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_target_layout(
    instance: *const Instance,
    target: *const c_char,
    layout: *mut c_char,
    layout_len: usize,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (instance, target) =
            unsafe { (arg(instance, "instance")?, arg_str(target, "target")?) };
        if layout.is_null() {
            return Err(Error::invalid("layout buffer is NULL"));
        }
        let target: Target = target.parse()?;
        let text = instance.layout(&target)?.to_string();
        check_room(&text, layout_len, "layout")?;
        // SAFETY: room checked above.
        unsafe { copy_out(&text, layout) };
        Ok(text.len() as i64)
    })
}

/// Opens an object.
///
/// # Safety
///
/// Pointers are valid; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_open(
    instance: *const Instance,
    target: *const c_char,
    out: *mut *mut Object,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (instance, target, out) = unsafe {
            (
                arg(instance, "instance")?,
                arg_str(target, "target")?,
                arg_mut(out, "out")?,
            )
        };
        let target: Target = target.parse()?;
        *out = Box::into_raw(Box::new(instance.open(&target)?));
        Ok(0)
    })
}

/// Flushes and closes an object. `-EBUSY` (the object stays open) while
/// submitted operations on it have not completed; otherwise the handle
/// is freed even when the final flush fails (its error is returned).
///
/// # Safety
///
/// `object` is NULL or from `rawstor_object_open`, not yet closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_close(object: *mut Object) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a live handle or NULL.
        let handle = unsafe { arg(object, "object") }?;
        if handle.pending() > 0 {
            return Err(Error::new(
                libc::EBUSY,
                "object has operations in flight: reap them first",
            ));
        }
        // SAFETY: per the contract, it came from Box::into_raw.
        let object = unsafe { Box::from_raw(object) };
        object.close().map(|()| 0)
    })
}

/// Removes an object (it must not be open in this instance).
///
/// # Safety
///
/// Pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_remove(
    instance: *const Instance,
    target: *const c_char,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (instance, target) =
            unsafe { (arg(instance, "instance")?, arg_str(target, "target")?) };
        instance.remove(&target.parse()?).map(|()| 0)
    })
}

/// Describes an open object.
///
/// # Safety
///
/// `object` is an open object; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_stat(
    object: *const Object,
    out: *mut rawstor_object_info,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (object, out) = unsafe { (arg(object, "object")?, arg_mut(out, "out")?) };
        *out = (&object.stat()?).into();
        Ok(0)
    })
}

/// Changes an object's size; shrinking needs `RAWSTOR_RESIZE_SHRINK`.
///
/// # Safety
///
/// `object` is an open object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_resize(
    object: *const Object,
    size: u64,
    flags: u32,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a valid pointer.
        let object = unsafe { arg(object, "object") }?;
        if flags & !RAWSTOR_RESIZE_SHRINK != 0 {
            return Err(Error::invalid(format!("unknown resize flags {flags:#x}")));
        }
        object
            .resize(size, flags & RAWSTOR_RESIZE_SHRINK != 0)
            .map(|()| 0)
    })
}

/// Lists objects at `location` sorted by UUID: those after `after` (NULL
/// for the first page), at most `max`. Writes the count to `count`; a
/// count below `max` means the listing is complete.
///
/// # Safety
///
/// Pointers are valid; `entries` has room for `max` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_list(
    instance: *const Instance,
    location: *const c_char,
    after: *const c_char,
    entries: *mut rawstor_object_info,
    max: usize,
    count: *mut usize,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (instance, location, count) = unsafe {
            (
                arg(instance, "instance")?,
                arg_str(location, "location")?,
                arg_mut(count, "count")?,
            )
        };
        let after: Option<Uuid> = if after.is_null() {
            None
        } else {
            // SAFETY: non-null and NUL-terminated per the contract.
            Some(crate::uuid::parse(unsafe { arg_str(after, "after") }?)?)
        };
        if max == 0 {
            *count = 0;
            return Ok(0);
        }
        if entries.is_null() {
            return Err(Error::invalid("entries is NULL"));
        }
        let page = instance.list(&location.parse()?, after, max)?;
        // SAFETY: the caller lends room for `max` entries; page.len() <= max.
        let out = unsafe { std::slice::from_raw_parts_mut(entries, page.len()) };
        for (slot, info) in out.iter_mut().zip(&page) {
            *slot = info.into();
        }
        *count = page.len();
        Ok(0)
    })
}

/// Makes a queue of `depth` entries (0: the instance's default).
///
/// # Safety
///
/// Pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_queue_new(
    instance: *const Instance,
    depth: u32,
    out: *mut *mut Queue,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (instance, out) = unsafe { (arg(instance, "instance")?, arg_mut(out, "out")?) };
        *out = Box::into_raw(Box::new(instance.queue(depth)?));
        Ok(0)
    })
}

/// Frees a queue. Completions not reaped are dropped.
///
/// # Safety
///
/// `queue` is NULL or from `rawstor_queue_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_queue_free(queue: *mut Queue) {
    if !queue.is_null() {
        // SAFETY: per the contract, it came from Box::into_raw.
        drop(unsafe { Box::from_raw(queue) });
    }
}

/// A file descriptor that is readable while completions wait; owned by
/// the queue (do not close it).
///
/// # Safety
///
/// `queue` is a live queue.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_queue_eventfd(queue: *const Queue) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a valid pointer.
        let queue = unsafe { arg(queue, "queue") }?;
        queue.eventfd().map(i64::from)
    })
}

/// Submits `count` entries; returns how many were accepted, or `-EAGAIN`
/// when the queue is full. Malformed entries complete with an error.
///
/// # Safety
///
/// See `Queue::submit`: objects stay open and buffers stay valid until
/// each completion is reaped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_queue_submit(
    queue: *const Queue,
    sqes: *const Sqe,
    count: u32,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a valid pointer.
        let queue = unsafe { arg(queue, "queue") }?;
        if count == 0 {
            return Ok(0);
        }
        if sqes.is_null() {
            return Err(Error::invalid("sqes is NULL"));
        }
        // SAFETY: the caller lends `count` entries.
        let sqes = unsafe { std::slice::from_raw_parts(sqes, count as usize) };
        // SAFETY: the caller's contract is submit's.
        unsafe { queue.submit(sqes) }.map(|n| n as i64)
    })
}

/// Reaps up to `max` completions into `cqes`, waiting until `min` are
/// ready (fewer if fewer are outstanding) or `timeout_ms` passes (-1:
/// no limit). Returns how many were reaped.
///
/// # Safety
///
/// `cqes` has room for `max` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_queue_reap(
    queue: *const Queue,
    cqes: *mut Cqe,
    max: u32,
    min: u32,
    timeout_ms: c_int,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a valid pointer.
        let queue = unsafe { arg(queue, "queue") }?;
        if max == 0 {
            return Ok(0);
        }
        if cqes.is_null() {
            return Err(Error::invalid("cqes is NULL"));
        }
        // SAFETY: the caller lends room for `max` entries.
        let out = unsafe { std::slice::from_raw_parts_mut(cqes, max as usize) };
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        Ok(queue.reap(out, min as usize, timeout) as i64)
    })
}

/// Why the failed completion tagged `user_data`, among those the last
/// `rawstor_queue_reap` on `queue` returned, failed, as the library tells
/// it ("object ...: another writer holds the lease ..."): a completion
/// carries only the errno. NULL when that reap returned no such failure.
/// Valid until the next reap on the queue.
///
/// # Safety
///
/// `queue` is NULL or from `rawstor_queue_new`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_queue_error(queue: *const Queue, user_data: u64) -> *const c_char {
    // SAFETY: the caller passes a valid pointer or NULL.
    let Some(queue) = (unsafe { queue.as_ref() }) else {
        return std::ptr::null();
    };
    // The message lives in the queue until its next reap.
    catch_unwind(AssertUnwindSafe(|| {
        queue.error_with(user_data, CStr::as_ptr)
    }))
    .ok()
    .flatten()
    .unwrap_or(std::ptr::null())
}

/// Reads `len` bytes at `offset`, waiting for them. Returns `len`.
///
/// # Safety
///
/// `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_pread(
    object: *const Object,
    buf: *mut u8,
    len: usize,
    offset: u64,
) -> i64 {
    call(|| {
        // SAFETY: the caller passes a valid pointer.
        let object = unsafe { arg(object, "object") }?;
        if len == 0 {
            return Ok(0);
        }
        if buf.is_null() {
            return Err(Error::invalid("buf is NULL"));
        }
        // Refused before a slice is made of a length the caller may not
        // have lent (`SIZE_MAX - 4000`, say).
        object.check_io("read", offset, len as u64, true)?;
        // SAFETY: the caller lends `len` writable bytes (at most
        // RAWSTOR_IO_MAX, checked above).
        object.read_at(unsafe { std::slice::from_raw_parts_mut(buf, len) }, offset)?;
        Ok(len as i64)
    })
}

/// Writes `len` bytes at `offset`, waiting for them. Returns `len`.
///
/// # Safety
///
/// `buf` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_pwrite(
    object: *const Object,
    buf: *const u8,
    len: usize,
    offset: u64,
) -> i64 {
    call(|| {
        // SAFETY: the caller passes a valid pointer.
        let object = unsafe { arg(object, "object") }?;
        if len == 0 {
            return Ok(0);
        }
        if buf.is_null() {
            return Err(Error::invalid("buf is NULL"));
        }
        // Refused before a slice is made of a length the caller may not
        // have lent (`SIZE_MAX - 4000`, say).
        object.check_io("write", offset, len as u64, true)?;
        // SAFETY: the caller lends `len` readable bytes (at most
        // RAWSTOR_IO_MAX, checked above).
        object.write_at(unsafe { std::slice::from_raw_parts(buf, len) }, offset)?;
        Ok(len as i64)
    })
}

/// Makes every completed write durable, waiting for it.
///
/// # Safety
///
/// `object` is an open object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_flush(object: *const Object) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes a valid pointer.
        unsafe { arg(object, "object") }?.flush().map(|()| 0)
    })
}

/// Block status: returns 1 if the first `*extent` bytes at `offset` hold
/// data, 0 if they read as zeros because nothing is stored there (never
/// written or discarded); `*extent` is at least 1 and at most `length`.
/// A negative errno on failure (`-ENXIO` past the end).
///
/// # Safety
///
/// `object` is an open object; `extent` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rawstor_object_block_status(
    object: *const Object,
    offset: u64,
    length: u64,
    extent: *mut u64,
) -> c_int {
    call_int(|| {
        // SAFETY: the caller passes valid pointers.
        let (object, extent) = unsafe { (arg(object, "object")?, arg_mut(extent, "extent")?) };
        let (data, n) = object.extent(offset, length)?;
        *extent = n;
        Ok(i64::from(data))
    })
}

/// Sizes of the shared structs, for C callers to compare with `sizeof`.
#[unsafe(no_mangle)]
pub extern "C" fn rawstor_struct_size(which: c_int) -> usize {
    match which {
        0 => std::mem::size_of::<Sqe>(),
        1 => std::mem::size_of::<Cqe>(),
        2 => std::mem::size_of::<Options>(),
        3 => std::mem::size_of::<rawstor_object_info>(),
        4 => std::mem::size_of::<rawstor_create_spec>(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_eio_with_a_message() {
        let result = call(|| panic!("boom"));
        assert_eq!(result, -i64::from(libc::EIO));
        // SAFETY: rawstor_last_error returns a valid C string.
        let message = unsafe { CStr::from_ptr(rawstor_last_error()) }
            .to_str()
            .unwrap();
        assert!(message.contains("boom"), "{message}");
    }

    #[test]
    fn null_arguments_are_einval() {
        // SAFETY: NULLs are the case under test.
        let rc = unsafe {
            rawstor_object_open(std::ptr::null(), std::ptr::null(), std::ptr::null_mut())
        };
        assert_eq!(rc, -libc::EINVAL);
    }
}
