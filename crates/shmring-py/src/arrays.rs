//! numpy arrays laid over a frame's record in place, without a copy.
//!
//! Each array's base is a read-only `memoryview` of the frame: the frame's
//! buffer export is what keeps the record leased (the frame object cannot
//! go while the view holds it, and [`Frame.release`](crate::frame) refuses
//! while any export is alive), and numpy refuses to make an array over a
//! read-only base writable.

use std::ffi::c_void;
use std::os::raw::c_int;

use numpy::npyffi::{self, npy_intp, NpyTypes, NPY_TYPES, PY_ARRAY_API};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::errors::raise;

/// The element types of the typed views.
#[derive(Clone, Copy)]
pub enum Element {
    U8,
    I16,
    F32,
}

impl Element {
    fn npy(self) -> NPY_TYPES {
        match self {
            Element::U8 => NPY_TYPES::NPY_UBYTE,
            Element::I16 => NPY_TYPES::NPY_SHORT,
            Element::F32 => NPY_TYPES::NPY_FLOAT,
        }
    }

    fn size(self) -> usize {
        match self {
            Element::U8 => 1,
            Element::I16 => 2,
            Element::F32 => 4,
        }
    }
}

/// An array's place in a record: where it starts, its shape and strides
/// (in bytes), all within the record.
pub struct Layout<const N: usize> {
    pub offset: usize,
    pub shape: [usize; N],
    pub strides: [usize; N],
    pub element: Element,
}

impl<const N: usize> Layout<N> {
    /// One past the last byte the array can reach, if it does not overflow.
    fn end(&self) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(self.offset);
        }
        let mut last = self.offset;
        for (&extent, &stride) in self.shape.iter().zip(&self.strides) {
            last = last.checked_add((extent - 1).checked_mul(stride)?)?;
        }
        last.checked_add(self.element.size())
    }
}

static NUMPY_IMPORTED: PyOnceLock<()> = PyOnceLock::new();

/// Imports numpy once, so that a missing numpy is an `ImportError` that
/// says so rather than a failure deep in its C API.
fn import_numpy(py: Python<'_>) -> PyResult<()> {
    NUMPY_IMPORTED.get_or_try_init(py, || py.import("numpy").map(drop)).map(|_| ()).map_err(|e| {
        let message = format!("numpy is needed for typed frame views (pip install numpy): {e}");
        pyo3::exceptions::PyImportError::new_err(message)
    })
}

/// A read-only array over `layout` of the record `data..data + len` that
/// `owner` exports through the buffer protocol.
///
/// # Safety
///
/// `data..data + len` must be the bytes `owner` exports (its buffer), valid
/// for as long as any export of `owner` lives.
pub unsafe fn borrow<'py, const N: usize>(
    owner: &Bound<'py, PyAny>,
    data: *const u8,
    len: usize,
    layout: &Layout<N>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = owner.py();
    match layout.end() {
        Some(end) if end <= len => {}
        _ => return Err(raise(|e| &e.media_error, "a view would reach past the end of the record")),
    }
    import_numpy(py)?;
    // The base: a read-only view of the owner, one export for the array's
    // lifetime (released when numpy drops its base).
    // SAFETY: `owner` is a live object; the call returns a new reference
    // or null with an exception set.
    let base = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(owner.as_ptr())) }?;
    let mut shape = [0 as npy_intp; N];
    let mut strides = [0 as npy_intp; N];
    for i in 0..N {
        // Both fit: they are bounded by the record's length (checked above),
        // which is far below `isize::MAX`.
        shape[i] = layout.shape[i] as npy_intp;
        strides[i] = layout.strides[i] as npy_intp;
    }
    // SAFETY: numpy's C API, imported above. `PyArray_DescrFromType`
    // returns a new reference to a builtin descriptor, which
    // `PyArray_NewFromDescr` steals. The data pointer and every element the
    // shape and strides reach lie in `data..data + len` (checked above),
    // which stays valid while `base` (an export of `owner`) lives; flags 0
    // makes the array read-only and not the owner of its data.
    let array = unsafe {
        let descr = PY_ARRAY_API.PyArray_DescrFromType(py, layout.element.npy() as c_int);
        if descr.is_null() {
            return Err(PyErr::fetch(py));
        }
        let array = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, NpyTypes::PyArray_Type),
            descr,
            N as c_int,
            shape.as_mut_ptr(),
            strides.as_mut_ptr(),
            data.add(layout.offset).cast_mut().cast::<c_void>(),
            0,
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, array)?
    };
    // SAFETY: `array` is a fresh ndarray; `SetBaseObject` steals the
    // reference to `base` (also on failure, when it is released).
    let status = unsafe { PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), base.into_ptr()) };
    if status < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(array)
}
