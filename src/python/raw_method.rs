//! Hand-written CPython method-table entries for the hottest methods
//! (`ObjectPool.get`, `put` and `borrow`, `Borrow.__enter__` and
//! `__exit__`, `BlockPool.get`, `BufferPool.get`,
//! `Block.release`, `Buffer.release` and `Buffer.write`), in place of the
//! `#[pymethods]` wrappers.
//!
//! Why: a `#[pymethods]` method takes every call through PyO3's generic
//! argument parser (`FunctionDescription`) and a type check of `self`.
//! Here a call of positional arguments only (the usual call) is taken as
//! is, and PyO3's parser runs only for any other. The
//! entries are method descriptors on the class (`PyDescr_NewMethod`,
//! stable ABI) with the flags `#[pymethods]` gives the same method, so
//! CPython specialises `pool.get()` as before, and `help()`,
//! `inspect.signature` (the `__text_signature__` line of the doc) and the
//! stubs see the same methods.
//!
//! The shapes, each a macro written once for any class:
//! - [`pyo3_signature_method!`]: any signature without `*args`/`**kwargs`,
//!   given as PyO3's own `FunctionDescription` (`get(n, /, *,
//!   zeroed=False)`): a call of positional arguments alone, as many as the
//!   signature takes, skips the parser; any other goes through PyO3's
//!   parser itself, so its errors are PyO3's by construction.
//!   For one parameter (`get(timeout=...)`, `put(obj, /)`), PyO3's
//!   description is [`one_param`].
//! - [`no_arg_method!`]: no parameters (`release()`, `BufferPool.get()`),
//!   a `METH_NOARGS` entry as `#[pymethods]` makes, so CPython checks the
//!   arity with its own messages, as before. Not `METH_FASTCALL |
//!   METH_KEYWORDS`: on CPython 3.11 that costs 38 Ir more per call
//!   (measured on `block.release()` and `BufferPool.get()`); PyO3 has no
//!   trampoline for a plain `METH_FASTCALL` entry.
//!
//! `put` could be a `METH_O` entry (35 Ir less per call on 3.11), but then
//! CPython checks its arity, with messages that cannot name the parameter
//! (`ObjectPool.put() takes exactly one argument (0 given)`), and a bad
//! argument's message must name it; commit 165bf9e has that variant.
//!
//! What each entry does, and why it is sound:
//! - **Attached, and PyO3 knows it.** CPython calls a method only from a
//!   thread attached to the interpreter (holding the GIL, or attached on a
//!   free-threaded build), so the entry may use a `Python` token. The entry
//!   runs its body through PyO3's own trampoline
//!   (`pyo3::impl_::trampoline`, what `#[pymethods]` expands to), which
//!   raises PyO3's attach count for the call: a `Py<T>` dropped inside (the
//!   holder's reference a checked `put` gives up, an object the pool
//!   destroys) is released at once, not queued in PyO3's reference pool
//!   until some later call. A hand-rolled entry with a bare
//!   `Python::assume_attached()` token would leave that count at 0 and
//!   queue those releases (`tests/object_pool/test_raw_methods.py` and
//!   `tests/block_pool/test_block_raw_methods.py` check that none is). `Python::attach` would count too, but on a thread PyO3
//!   has not counted it attaches anew (`PyGILState_Ensure`), which costs
//!   more than the wrapper it replaces. The trampoline (like
//!   `FunctionDescription` and `extract_argument_with_default`, used as
//!   `#[pymethods]` uses them) is `#[doc(hidden)]` API: PyO3 is pinned by
//!   `Cargo.lock`, and the compiler checks its signatures at each upgrade. It costs about 60 Ir a call (the count is
//!   a thread-local), which a no-count entry would save only if nothing it
//!   runs could drop a `Py<T>`: not the case (the core drops references).
//! - **No unwinding into C.** The trampoline catches a panic and raises it
//!   as `pyo3_runtime.PanicException`; an `Err` is restored as the raised
//!   exception and NULL returned. Nothing costs more when nothing fails.
//! - **`self` is an instance of the class.** The descriptor checks it
//!   before every call (`descr_check`; a specialised call checks the exact
//!   type), as for C methods generally; only a debug build checks again.
//! - **Borrowed arguments.** The argument array and `self` are borrowed for
//!   the call (CPython holds them); the entry takes no reference it does
//!   not give back or hand on, and returns a new reference or NULL.
//! - **No GIL reliance.** Nothing here is shared but the `static` entries,
//!   read-only after construction, so the free-threaded build is as safe as
//!   with `#[pymethods]`.
//! - **Translation only.** The body is the binding method's one call; the
//!   pool logic stays in the core.
//!
//! Argument errors are PyO3's (or, for `METH_NOARGS`, CPython's) messages,
//! made by PyO3's parser (`ObjectPool.get() takes from 0 to 1 positional
//! arguments but 2 were given`, `ObjectPool.put() missing 1 required
//! positional argument: 'obj'`, ...).

use std::ffi::CStr;

use pyo3::ffi;
use pyo3::impl_::extract_argument::{FunctionDescription, NoVarargs, NoVarkeywords};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// A method-table entry CPython keeps a pointer to for the life of the
/// process: only ever a `static`, built by one of this module's macros.
pub struct RawMethod(ffi::PyMethodDef);

// SAFETY: the entry is never written after construction (CPython only reads
// a `PyMethodDef`), and its pointers are to `'static` data: the name and doc
// are string literals, the function a plain `extern "C" fn`.
unsafe impl Sync for RawMethod {}

impl RawMethod {
    /// A `METH_FASTCALL | METH_KEYWORDS` entry.
    pub const fn fastcall_keywords(
        name: &'static CStr,
        doc: &'static CStr,
        f: ffi::PyCFunctionFastWithKeywords,
    ) -> Self {
        RawMethod(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: f,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr(),
        })
    }

    /// A `METH_NOARGS` entry.
    pub const fn noargs(name: &'static CStr, doc: &'static CStr, f: ffi::PyCFunction) -> Self {
        RawMethod(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: f },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: doc.as_ptr(),
        })
    }

    fn name(&self) -> &'static CStr {
        // SAFETY: `ml_name` is the `&'static CStr` given at construction.
        unsafe { CStr::from_ptr(self.0.ml_name) }
    }
}

/// Sets each entry on `class` as a method descriptor, under its name
/// (replacing nothing: the class defines no method of that name). Called
/// once, when the module is initialised, before any instance exists.
pub fn install(class: &Bound<'_, PyType>, methods: &[&'static RawMethod]) -> PyResult<()> {
    let py = class.py();
    for method in methods {
        let entry = std::ptr::from_ref(&method.0).cast_mut();
        // SAFETY: `class` is a live type object; the entry is a `static`,
        // so it outlives the descriptor, and CPython never writes to it (the
        // `*mut` is the C signature's). A NULL result has an exception set.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(class.as_type_ptr(), entry))?
        };
        class.setattr(&*method.name().to_string_lossy(), descr)?;
    }
    Ok(())
}

/// `self` as the class the entry was installed on.
///
/// # Safety
/// `slf` is the (borrowed, never NULL) `self` CPython passes to a method of a
/// descriptor [`install`]ed on `T`'s class. CPython checks, on every path
/// to the function, that `self` is an instance of the descriptor's class:
/// `descr_check` in each `method_vectorcall_*` and in `__get__` (a bound
/// method), and an exact-type guard in the specialised calls. So the check
/// is not repeated here (a debug build does repeat it).
#[inline(always)]
pub unsafe fn receiver<'a, 'py, T: pyo3::PyClass>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
) -> Borrowed<'a, 'py, T> {
    // SAFETY: CPython's `self` is never NULL (the contract): PyO3's null
    // check below (a test and a branch a call) is dropped.
    unsafe { std::hint::assert_unchecked(!slf.is_null()) };
    // SAFETY: see the function's contract.
    let slf = unsafe { Borrowed::from_ptr(py, slf) };
    debug_assert!(slf.is_instance_of::<T>());
    // SAFETY: an instance of `T`'s class or of a subclass (the contract).
    unsafe { slf.cast_unchecked::<T>() }
}

/// A borrowed argument, as PyO3's parser hands it out.
pub type Arg<'py> = Borrowed<'py, 'py, PyAny>;

/// The arguments of a `METH_FASTCALL | METH_KEYWORDS` method of signature
/// `desc` (PyO3's own description, what `#[pymethods]` builds from
/// `#[pyo3(signature = ...)]`), one slot per parameter, positional ones
/// first. A call of positional arguments only, no fewer than the required
/// and no more than the positional parameters (the usual call), is taken
/// as is: its arguments fill the first slots, which is what the parser
/// would do; any other goes through PyO3's parser
/// (`FunctionDescription::extract_arguments_fastcall`, what `#[pymethods]`
/// calls), so every error is PyO3's by construction, and so is every
/// accepted call. `N` is the number of parameters (checked by the parser
/// in a debug build). Fits any signature without `*args` or `**kwargs`.
///
/// # Safety
/// `args`, `nargs` and `kwnames` are what CPython passes to a
/// `METH_FASTCALL | METH_KEYWORDS` function: `nargs` positional arguments
/// (none NULL), then one value per name of `kwnames` (a tuple of `str`, or
/// NULL).
#[inline(always)]
pub unsafe fn pyo3_args<'py, const N: usize>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    desc: &FunctionDescription,
) -> PyResult<[Option<Arg<'py>>; N]> {
    let mut out = [None; N];
    let positional = desc.positional_parameter_names.len();
    debug_assert!(positional <= N);
    let given = nargs as usize;
    if kwnames.is_null() && desc.required_positional_parameters <= given && given <= positional {
        for (slot, i) in out.iter_mut().zip(0..given) {
            // SAFETY: `nargs` positional arguments (the contract), borrowed
            // for the call.
            let arg = unsafe { *args.add(i) };
            // SAFETY: CPython passes no NULL argument (the contract): PyO3's
            // null check is dropped.
            unsafe { std::hint::assert_unchecked(!arg.is_null()) };
            // SAFETY: as above.
            *slot = Some(unsafe { Borrowed::from_ptr(py, arg) });
        }
        return Ok(out);
    }
    // SAFETY: the function's contract, which is the parser's too.
    unsafe { pyo3_parse(py, args, nargs, kwnames, desc, &mut out) }?;
    Ok(out)
}

/// [`pyo3_args`] of any other call: PyO3's parser.
///
/// # Safety
/// As for [`pyo3_args`].
#[inline(never)]
unsafe fn pyo3_parse<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    desc: &FunctionDescription,
    out: &mut [Option<Arg<'py>>],
) -> PyResult<()> {
    debug_assert_eq!(
        out.len(),
        desc.positional_parameter_names.len() + desc.keyword_only_parameters.len()
    );
    // SAFETY: CPython's arguments to a `METH_FASTCALL | METH_KEYWORDS`
    // function (the contract), and one output slot per parameter.
    unsafe {
        desc.extract_arguments_fastcall::<NoVarargs, NoVarkeywords>(py, args, nargs, kwnames, out)
    }
    .map(drop)
}

/// What a method's body returns, as the new reference (or NULL with an
/// exception set) CPython expects.
pub trait IntoRaw {
    fn into_raw(self, py: Python<'_>) -> PyResult<*mut ffi::PyObject>;
}

impl IntoRaw for PyResult<Py<PyAny>> {
    #[inline(always)]
    fn into_raw(self, _py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
        self.map(Py::into_ptr)
    }
}

impl IntoRaw for PyResult<()> {
    #[inline(always)]
    fn into_raw(self, py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
        self.map(|()| py.None().into_ptr())
    }
}

impl<T> IntoRaw for PyResult<Bound<'_, T>> {
    #[inline(always)]
    fn into_raw(self, _py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
        self.map(Bound::into_ptr)
    }
}

impl IntoRaw for PyResult<usize> {
    #[inline(always)]
    fn into_raw(self, py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
        use pyo3::IntoPyObject as _;
        self.map(|n| match n.into_pyobject(py) {
            Ok(n) => n.into_ptr(),
            Err(never) => match never {},
        })
    }
}

/// A `C` string literal of `concat!`'s pieces, checked at compile time.
#[doc(hidden)]
pub const fn c_str(s: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("a method's name or doc must end in one NUL and hold no other"),
    }
}

/// PyO3's description of a method `class.name` of one parameter `param`
/// (a one-element slice), `required` (0 or 1) of it required and, if so,
/// positional-only: what `#[pyo3(signature = (param=...))]` or
/// `(param, /)` builds.
#[doc(hidden)]
pub const fn one_param(
    class: &'static str,
    name: &'static str,
    param: &'static [&'static str; 1],
    required: usize,
) -> FunctionDescription {
    FunctionDescription {
        cls_name: Some(class),
        func_name: name,
        positional_parameter_names: param,
        positional_only_parameters: required,
        required_positional_parameters: required,
        keyword_only_parameters: &[],
    }
}

/// `static $entry: RawMethod`: a `METH_NOARGS` method of `$class` named
/// `$name`, as `#[pymethods]` makes a method without parameters: CPython
/// checks that a call has no arguments, with its own messages, as before.
/// `$body` gets `self` (`&Bound<$class>`) and the token and returns what
/// [`IntoRaw`] takes. `$sig` (`($self)`) and `$doc` as for
/// [`pyo3_signature_method!`].
macro_rules! no_arg_method {
    (
        $vis:vis static $entry:ident: $class:ident, $name:literal, $sig:literal, $doc:literal,
        |$slf:ident, $py:ident| $body:expr
    ) => {
        $vis static $entry: $crate::python::raw_method::RawMethod = {
            use pyo3::{ffi, PyResult, Python};
            use $crate::python::raw_method::{self as raw, IntoRaw as _};

            /// # Safety
            /// Called by CPython (through PyO3's trampoline) as a
            /// `METH_NOARGS` method of `$class`.
            unsafe fn body<'py>(
                $py: Python<'py>,
                slf: *mut ffi::PyObject,
            ) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: CPython's `self` for a method installed on `$class`.
                let slf = unsafe { raw::receiver::<$class>($py, slf) };
                let $slf = &*slf;
                ($body).into_raw($py)
            }

            raw::RawMethod::noargs(
                raw::c_str(concat!($name, "\0")),
                raw::c_str(concat!($name, $sig, "\n--\n\n", $doc, "\0")),
                pyo3::impl_::trampoline::get_trampoline_function!(noargs, body),
            )
        };
    };
}

/// `static $entry: RawMethod`: a `METH_FASTCALL | METH_KEYWORDS` method of
/// `$class` named `$name` whose parameters PyO3's `$desc` (a
/// `FunctionDescription`) describes; the usual call (the
/// required positional arguments only) skips PyO3's parser, any other goes
/// through it (see [`pyo3_args`]). `$body` gets `self` (`Borrowed<$class>`),
/// the token and the arguments (`[Option<Arg>; N]`, one per parameter,
/// positional ones first, a required one always `Some`) and returns what
/// [`IntoRaw`] takes; it converts each argument as `#[pymethods]` would
/// (with `extract_argument`'s messages). `$sig` is the
/// `__text_signature__` (`($self, timeout=...)`), `$doc` the docstring. The
/// function runs `$body` through PyO3's trampoline.
macro_rules! pyo3_signature_method {
    (
        $vis:vis static $entry:ident: $class:ident, $name:literal, $desc:expr,
        $sig:literal, $doc:literal,
        |$slf:ident, $py:ident, $args:ident| $body:expr
    ) => {
        $vis static $entry: $crate::python::raw_method::RawMethod = {
            use pyo3::{ffi, PyResult, Python};
            use $crate::python::raw_method::{self as raw, IntoRaw as _};

            const DESC: pyo3::impl_::extract_argument::FunctionDescription = $desc;
            /// One slot per parameter.
            const N: usize =
                DESC.positional_parameter_names.len() + DESC.keyword_only_parameters.len();

            /// # Safety
            /// Called by CPython (through PyO3's trampoline) as a
            /// `METH_FASTCALL | METH_KEYWORDS` method of `$class`.
            unsafe fn body<'py>(
                $py: Python<'py>,
                slf: *mut ffi::PyObject,
                args: *const *mut ffi::PyObject,
                nargs: ffi::Py_ssize_t,
                kwnames: *mut ffi::PyObject,
            ) -> PyResult<*mut ffi::PyObject> {
                // SAFETY: CPython's `self` for a method installed on `$class`.
                let $slf = unsafe { raw::receiver::<$class>($py, slf) };
                // SAFETY: CPython's arguments to a method of this kind.
                let $args = unsafe { raw::pyo3_args::<N>($py, args, nargs, kwnames, &DESC)? };
                ($body).into_raw($py)
            }

            raw::RawMethod::fastcall_keywords(
                raw::c_str(concat!($name, "\0")),
                raw::c_str(concat!($name, $sig, "\n--\n\n", $doc, "\0")),
                pyo3::impl_::trampoline::get_trampoline_function!(
                    fastcall_cfunction_with_keywords,
                    body
                ),
            )
        };
    };
}

pub(crate) use {no_arg_method, pyo3_signature_method};
