//! Argument conversion with errors that name the argument and the value.

use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyTuple};

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// A non-negative whole number: an `int`, or an integer type with
/// `__index__` such as numpy's (`bool` refused: `max_idle=True` is a bug).
pub fn count(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let not_int =
        || PyTypeError::new_err(format!("{name} must be an int, got {}", type_name(value)));
    if value.is_instance_of::<PyBool>() {
        return Err(not_int());
    }
    if !value.is_instance_of::<PyInt>() {
        let index = value
            .call_method0(pyo3::intern!(value.py(), "__index__"))
            .map_err(|_| not_int())?;
        if index.is_instance_of::<PyBool>() || !index.is_instance_of::<PyInt>() {
            return Err(not_int());
        }
        return count(&index, name);
    }
    match value.extract::<i64>() {
        Ok(n) if n >= 0 => usize::try_from(n).map_err(|_| too_large(value, name)),
        Ok(n) => Err(PyValueError::new_err(format!(
            "{name} must be >= 0, got {n}"
        ))),
        Err(_) => Err(too_large(value, name)),
    }
}

fn too_large(value: &Bound<'_, PyAny>, name: &str) -> PyErr {
    PyValueError::new_err(format!("{name} is out of range, got {value}"))
}

pub fn optional_count(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<usize>> {
    match value {
        Some(v) if !v.is_none() => count(v, name).map(Some),
        _ => Ok(None),
    }
}

/// Seconds as a non-negative real number, or `None`. Returns the number too,
/// for messages. Infinity means no limit.
pub fn seconds(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<(Option<Duration>, Option<f64>)> {
    let value = match value {
        Some(v) if !v.is_none() => v,
        _ => return Ok((None, None)),
    };
    if value.is_instance_of::<PyBool>()
        || !(value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>())
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number of seconds or None, got {}",
            type_name(value)
        )));
    }
    let secs: f64 = value.extract()?;
    if secs.is_nan() || secs < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be a non-negative number of seconds, got {}",
            repr(value)
        )));
    }
    // Beyond what a Duration holds (or infinite): no limit.
    Ok((Duration::try_from_secs_f64(secs).ok(), Some(secs)))
}

/// `None`, or a callable.
pub fn optional_callable(
    value: Option<Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<Py<PyAny>>> {
    match value {
        Some(v) if !v.is_none() => {
            if v.is_callable() {
                Ok(Some(v.unbind()))
            } else {
                Err(PyTypeError::new_err(format!(
                    "{name} must be callable or None, got {}",
                    type_name(&v)
                )))
            }
        }
        _ => Ok(None),
    }
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
            if item.is_instance_of::<PyInt>() {
                return Ok((count(&item, &format!("{noun} size"))?, None));
            }
            Err(PyTypeError::new_err(format!(
                "{name} must hold sizes or (size, max_idle) pairs, got {}",
                repr(&item)
            )))
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
