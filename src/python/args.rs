//! Argument conversion with errors that name the argument and the value.

use std::time::Duration;

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The name of `value`'s type, for messages.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// A non-negative whole number: whatever `operator.index` accepts (an
/// `int`, numpy's integers, any type with `__index__`), except `bool`
/// (`max_idle=True` is a bug). `ValueError` naming `name` below 0 or above
/// what a `usize` holds.
#[inline]
pub fn count(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    // The usual argument, an `int` in `0..=isize::MAX`, in one call: an
    // exact `int` (not a subclass, so neither `bool` nor an `__index__`
    // override) read as `PyLong_AsSsize_t` reads it. Anything else, and
    // the errors, take the path below, which makes the messages.
    // SAFETY: `value` is a live object; `PyLong_Type` a static type object.
    if unsafe { ffi::Py_TYPE(value.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyLong_Type) } {
        // SAFETY: an exact `int`; -1 with an exception set when it does not
        // fit, which `PyErr::take` clears before the path below.
        let n = unsafe { ffi::PyLong_AsSsize_t(value.as_ptr()) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        if n == -1 {
            drop(PyErr::take(value.py()));
        }
    }
    count_any(value, name)
}

/// [`count`] of anything but an exact `int` in `0..=isize::MAX`.
#[inline(never)]
fn count_any(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        // The common case inline, as cheaply as CPython converts an index.
        if let Ok(n) = value.extract::<i64>() {
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
        }
        return int_count(value, name);
    }
    let not_int =
        || PyTypeError::new_err(format!("{name} must be an int, got {}", type_name(value)));
    if value.is_instance_of::<PyBool>() || is_numpy_bool(value) {
        return Err(not_int());
    }
    // SAFETY: `value` is a live object; `PyNumber_Index` returns a new
    // reference or NULL with an exception set, which `from_owned_ptr_or_err`
    // takes over.
    let index =
        unsafe { Bound::from_owned_ptr_or_err(value.py(), ffi::PyNumber_Index(value.as_ptr())) }
            .map_err(|_| not_int())?;
    int_count(&index, name)
}

/// `count` of an `int` outside the fast path: the rest of `usize`'s range
/// (above `i64::MAX`), and the errors.
#[cold]
fn int_count(int: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    if let Ok(n) = int.extract::<usize>() {
        return Ok(n);
    }
    if int.lt(0)? {
        return Err(PyValueError::new_err(format!(
            "{name} must be >= 0, got {int}"
        )));
    }
    Err(out_of_range(int, name))
}

fn out_of_range(int: &Bound<'_, PyAny>, name: &str) -> PyErr {
    PyValueError::new_err(format!("{name} is out of range, got {int}"))
}

/// numpy's `bool` (it has `__float__`, and `__index__` in older numpy):
/// like `True`, a bug as a size or a timeout, not a number. Only asked of
/// values that are neither `int` nor `float`, so it costs the common
/// arguments nothing.
fn is_numpy_bool(value: &Bound<'_, PyAny>) -> bool {
    value
        .get_type()
        .name()
        .is_ok_and(|n| n == "bool" || n == "bool_")
}

pub fn optional_count(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<usize>> {
    match value {
        Some(v) if !v.is_none() => count(v, name).map(Some),
        _ => Ok(None),
    }
}

/// Seconds as a non-negative real number, or `None`: whatever `float()`
/// accepts from a number (an `int`, a `float`, numpy's numbers, `Decimal`,
/// `Fraction`, any type with `__float__` or `__index__`), not a string and
/// not a `bool`. Returns the number too, for messages. Infinity, and any
/// time too long for a `Duration` (about 585 billion years), mean no limit.
pub fn seconds(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<(Option<Duration>, Option<f64>)> {
    let value = match value {
        Some(v) if !v.is_none() => v,
        _ => return Ok((None, None)),
    };
    let not_number = || {
        PyTypeError::new_err(format!(
            "{name} must be a number of seconds or None, got {}",
            type_name(value)
        ))
    };
    let secs = if value.is_instance_of::<PyFloat>() {
        value.extract::<f64>()?
    } else {
        let is_int = value.is_instance_of::<PyInt>();
        if (is_int && value.is_instance_of::<PyBool>()) || (!is_int && is_numpy_bool(value)) {
            return Err(not_number());
        }
        // What `float()` does with a number: `__float__`, else `__index__`.
        // Strings have neither, so they are refused here.
        // SAFETY: `value` is a live object; `PyFloat_AsDouble` returns -1.0
        // with an exception set on failure, which `PyErr::take` collects.
        let secs = unsafe { ffi::PyFloat_AsDouble(value.as_ptr()) };
        if secs == -1.0 {
            if let Some(err) = PyErr::take(value.py()) {
                let py = value.py();
                return Err(if err.is_instance_of::<PyOverflowError>(py) {
                    PyOverflowError::new_err(format!(
                        "{name} is too large to be a number of seconds, got {}",
                        repr(value)
                    ))
                } else if err.is_instance_of::<PyTypeError>(py) {
                    not_number()
                } else {
                    err
                });
            }
        }
        secs
    };
    if secs.is_nan() || secs < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be a non-negative number of seconds, got {}",
            repr(value)
        )));
    }
    // Beyond what a Duration holds (or infinite): no limit. Below a
    // nanosecond but positive: one nanosecond (a positive idle timeout must
    // not round to the zero that is refused as "got 0").
    let duration = Duration::try_from_secs_f64(secs)
        .ok()
        .map(|d| d.max(Duration::from_nanos(u64::from(secs > 0.0))));
    Ok((duration, Some(secs)))
}

/// `None`, or a callable.
pub fn optional_callable(
    value: Option<Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<Py<PyAny>>> {
    match value.filter(|v| !v.is_none()) {
        None => Ok(None),
        Some(v) if v.is_callable() => Ok(Some(v.unbind())),
        Some(v) => Err(type_error(name, "callable or None", &v)),
    }
}

/// One of a few strings, each naming a value (`None`: the first), as
/// `choices` lists them: `reset_on="get"`, `zero="release"`.
pub fn choice<T: Copy>(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
    choices: &[(&str, T)],
) -> PyResult<T> {
    let Some(v) = value.filter(|v| !v.is_none()) else {
        return Ok(choices[0].1);
    };
    let quoted: Vec<String> = choices.iter().map(|(s, _)| format!("'{s}'")).collect();
    let expected = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    let Ok(text) = v.cast::<PyString>() else {
        return Err(type_error(name, &expected, v));
    };
    let text = text.to_str()?;
    match choices.iter().find(|(s, _)| *s == text) {
        Some(&(_, value)) => Ok(value),
        None => Err(PyValueError::new_err(format!(
            "{name} must be {expected}, got {}",
            repr(v)
        ))),
    }
}

/// The string `choices` names `value` with (see [`choice`]).
pub fn choice_name<T: PartialEq>(choices: &[(&'static str, T)], value: T) -> &'static str {
    choices
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("?", |c| c.0)
}

pub fn repr(value: &Bound<'_, PyAny>) -> String {
    value.repr().map_or_else(|_| "?".into(), |r| r.to_string())
}

pub fn describe(value: &Bound<'_, PyAny>) -> String {
    format!(
        "{} object at {:#x}",
        type_name(value),
        value.as_ptr() as usize
    )
}

pub fn type_error(name: &str, expected: &str, value: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "{name} must be {expected}, got {}",
        type_name(value)
    ))
}

/// A list of sizes, each a bare size or a `(size, max_idle)` pair: the
/// `classes` of a block pool, the `tiers` of a tiered pool. `noun` names one
/// entry in messages ("class", "tier").
pub fn size_specs(
    value: &Bound<'_, PyAny>,
    name: &str,
    noun: &str,
) -> PyResult<Vec<(usize, Option<usize>)>> {
    let expected = "an iterable of sizes or (size, max_idle) pairs";
    value
        .try_iter()
        .map_err(|_| type_error(name, expected, value))?
        .map(|item| {
            let item = item?;
            if let Ok(pair) = item.cast::<pyo3::types::PyTuple>() {
                if pair.len() == 2 {
                    let size = count(&pair.get_item(0)?, &format!("{noun} size"))?;
                    let max_idle = count(&pair.get_item(1)?, &format!("{noun} max_idle"))?;
                    return Ok((size, Some(max_idle)));
                }
            }
            // A bare size: anything `operator.index` accepts.
            let size = count(&item, &format!("{noun} size"));
            if size
                .as_ref()
                .is_err_and(|e| e.is_instance_of::<PyTypeError>(item.py()))
            {
                return Err(PyTypeError::new_err(format!(
                    "{name} must hold sizes or (size, max_idle) pairs, got {}",
                    repr(&item)
                )));
            }
            Ok((size?, None))
        })
        .collect()
}

/// The objects of `value`, an iterable (lists and tuples without an
/// iterator); `TypeError` naming `name` otherwise.
pub fn collect_objects(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<Py<PyAny>>> {
    if let Ok(list) = value.cast::<PyList>() {
        return Ok(list.iter().map(Bound::unbind).collect());
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return Ok(tuple.iter().map(Bound::unbind).collect());
    }
    value
        .try_iter()
        .map_err(|_| type_error(name, "an iterable", value))?
        .map(|item| item.map(Bound::unbind))
        .collect()
}

/// `None`, or a `bool` (not merely truthy: `track=1` is refused).
pub fn optional_bool(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<bool>> {
    match value.filter(|v| !v.is_none()) {
        None => Ok(None),
        Some(v) => match v.cast::<PyBool>() {
            Ok(b) => Ok(Some(b.is_true())),
            Err(_) => Err(type_error(name, "a bool", v)),
        },
    }
}
