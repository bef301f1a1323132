//! A pool's optional `name=`: shown by `repr()`, warnings and metrics.

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::args;

pub struct Naming {
    name: Option<String>,
    /// `repr(name)`, as Python quotes it.
    name_repr: String,
}

impl Naming {
    /// `name=` as given to a pool's constructor: a `str` or `None`.
    pub fn new(name: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let (name, name_repr) = match name.filter(|n| !n.is_none()) {
            None => (None, String::new()),
            Some(n) => match n.cast::<PyString>() {
                Ok(s) => (Some(s.to_str()?.to_owned()), args::repr(n)),
                Err(_) => return Err(args::type_error("name", "a str or None", n)),
            },
        };
        Ok(Naming { name, name_repr })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// ` name='...'` for a `repr()`, or nothing.
    pub fn repr_part(&self) -> String {
        match &self.name {
            Some(_) => format!(" name={}", self.name_repr),
            None => String::new(),
        }
    }

    /// `ObjectPool 'name'` (or just the kind) for messages.
    pub fn describe(&self, kind: &str) -> String {
        match &self.name {
            Some(_) => format!("{kind} {}", self.name_repr),
            None => kind.to_owned(),
        }
    }
}
