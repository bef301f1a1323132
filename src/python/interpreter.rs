//! What the running CPython is, and what it offers beyond the API this
//! module was compiled against: whether it has a GIL, where a free-threaded
//! one keeps an object's shared reference count, and its unstable functions
//! looked up at run time ([`cpython_symbol`]). What reuse concludes from
//! them, and why it may, is in `reuse` (blocks and buffers) and
//! `borrow::spares` (`Borrow`s).

#[cfg(not(feature = "abi3"))]
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

#[cfg(not(feature = "abi3"))]
use pyo3::ffi;
#[cfg(not(feature = "abi3"))]
use pyo3::prelude::*;
#[cfg(not(feature = "abi3"))]
use pyo3::sync::PyOnceLock;

/// Whether this interpreter has a GIL (see `reuse`'s last condition).
/// Only asked by builds without `abi3`: an abi3 (limited API) build cannot
/// be loaded by a free-threaded interpreter of the versions it targets.
#[cfg(not(feature = "abi3"))]
static GIL_BUILD: PyOnceLock<bool> = PyOnceLock::new();

/// Asked at import (`set_callers_serialized`): from `sys.abiflags`, whose
/// "t" marks a free-threaded build (PEP 703), so that importing shardpool
/// imports nothing more (`sysconfig` would pull in a dozen modules); only
/// where `sys` has no `abiflags` (Windows) from `sysconfig`.
#[cfg(not(feature = "abi3"))]
pub fn gil_build(py: Python<'_>) -> PyResult<bool> {
    GIL_BUILD
        .get_or_try_init(py, || {
            let sys = py.import("sys")?;
            if let Ok(flags) = sys.getattr("abiflags") {
                return Ok(!flags.extract::<String>()?.contains('t'));
            }
            let flag = py
                .import("sysconfig")?
                .call_method1("get_config_var", ("Py_GIL_DISABLED",))?;
            Ok(!flag.is_truthy()?)
        })
        .copied()
}

/// Where a free-threaded CPython (3.13, 3.14) keeps an object's shared
/// reference count: after `ob_tid` (8 bytes), `ob_flags`, `ob_mutex`,
/// `ob_gc_bits` and `ob_ref_local` (8 bytes), before `ob_type`.
#[cfg(not(feature = "abi3"))]
const SHARED_COUNT_AT: usize = 16;
/// The flag bits of the shared count (`_Py_REF_SHARED_FLAG_MASK`): "maybe
/// weakref", "queued", "merged".
#[cfg(not(feature = "abi3"))]
pub const SHARED_FLAGS: isize = 0x3;

/// The word at [`SHARED_COUNT_AT`] of a live object, read atomically.
///
/// # Safety
/// `obj` is a live object of a free-threaded interpreter (its header is at
/// least 32 bytes, the word pointer-aligned).
#[cfg(not(feature = "abi3"))]
pub unsafe fn shared_count(obj: *mut ffi::PyObject) -> isize {
    // SAFETY: per the caller; CPython writes the word atomically.
    unsafe { AtomicIsize::from_ptr(obj.cast::<u8>().add(SHARED_COUNT_AT).cast()).load(Relaxed) }
}

/// Whether this interpreter keeps an object's shared count, with its
/// flags, where [`SHARED_COUNT_AT`] assumes: a fresh set made here reads 0
/// there, and 1 (the "maybe weakref" flag alone) once a weak reference to
/// it exists. (The cp314t tag pins the layout; this checks it on the
/// interpreter that loaded the module.) Checked once per pool; objects are
/// never reused where it fails.
#[cfg(not(feature = "abi3"))]
pub fn free_threaded_header_as_expected(py: Python<'_>) -> bool {
    let Ok(probe) = pyo3::types::PySet::empty(py) else {
        return false;
    };
    // SAFETY: a live object of this (free-threaded) interpreter.
    if unsafe { shared_count(probe.as_ptr()) } != 0 {
        return false;
    }
    let Ok(weak) = pyo3::types::PyWeakrefReference::new(&probe) else {
        return false;
    };
    // SAFETY: as above.
    let flagged = unsafe { shared_count(probe.as_ptr()) } & SHARED_FLAGS == 1;
    drop(weak);
    flagged
}

/// The function the running interpreter exports as `name`, looked up in
/// the process's global symbols, not linked: a module that linked a
/// function only newer CPythons have would fail to import into older ones
/// (undefined symbol). `None` where it has none.
///
/// # Safety
/// `F` is the `unsafe extern "C" fn` type of `name`'s C signature in every
/// CPython that exports it.
#[cfg(unix)]
pub unsafe fn cpython_symbol<F: Copy>(name: &std::ffi::CStr) -> Option<F> {
    const {
        assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut libc::c_void>());
    }
    // SAFETY: a NUL-terminated name looked up in the process's global
    // symbols (the interpreter's exports).
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: a non-null address of the exported function `name`, read as
    // the function pointer type `F` of its signature (the caller's promise;
    // the sizes are equal, checked above).
    (!found.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut libc::c_void, F>(&found) })
}

/// `PyUnstable_Object_IsUniquelyReferenced` (CPython 3.14).
#[cfg(not(feature = "abi3"))]
pub type IsUnique = unsafe extern "C" fn(*mut ffi::PyObject) -> std::ffi::c_int;

/// CPython's `PyUnstable_Object_IsUniquelyReferenced`, looked up in the
/// running interpreter ([`cpython_symbol`]): a build without `abi3` may
/// target a CPython before 3.14 with a GIL (PyO3 builds one for 3.11 and
/// later; free-threaded only from 3.14), which lacks it. Only a
/// free-threaded interpreter asks (a GIL build counts references instead);
/// where it is not found, nothing is reused (`ThreadSpares::judges`).
#[cfg(all(not(feature = "abi3"), unix))]
pub fn is_unique() -> Option<IsUnique> {
    // SAFETY: CPython exports it with this signature (`int (PyObject *)`).
    unsafe { cpython_symbol(c"PyUnstable_Object_IsUniquelyReferenced") }
}

/// Elsewhere (Windows) declared, and so resolved when the module is
/// linked: against a free-threaded CPython's import library, 3.14 and
/// later, which has it.
#[cfg(all(not(feature = "abi3"), not(unix)))]
pub fn is_unique() -> Option<IsUnique> {
    extern "C" {
        fn PyUnstable_Object_IsUniquelyReferenced(op: *mut ffi::PyObject) -> std::ffi::c_int;
    }
    Some(PyUnstable_Object_IsUniquelyReferenced)
}
