//! Audio samples where they lie in the ring: typed views over
//! [`SharedBytes`], read by copy or by single loads, never as `&[T]`.

use std::marker::PhantomData;

use shmring::SharedBytes;

mod sealed {
    pub trait Sealed {}
}

/// A sample type of the audio formats: any bits are a valid value.
pub trait Sample: sealed::Sealed + Copy + Default + 'static {
    /// Reads the sample at byte `offset` of `bytes` (one load when aligned).
    #[doc(hidden)]
    fn load(bytes: &SharedBytes<'_>, offset: usize) -> Option<Self>;
}

impl sealed::Sealed for f32 {}
impl Sample for f32 {
    fn load(bytes: &SharedBytes<'_>, offset: usize) -> Option<f32> {
        bytes.load_u32(offset).map(f32::from_bits)
    }
}

impl sealed::Sealed for i16 {}
impl Sample for i16 {
    fn load(bytes: &SharedBytes<'_>, offset: usize) -> Option<i16> {
        bytes.load_u16(offset).map(|bits| bits as i16)
    }
}

/// Samples of type `T` in memory a producer may still write (see
/// [`SharedBytes`]): a channel of an `F32Planar` chunk, or the interleaved
/// samples of an `S16Interleaved` one.
#[derive(Clone, Copy, Debug)]
pub struct SharedSamples<'a, T: Sample> {
    bytes: SharedBytes<'a>,
    _samples: PhantomData<&'a [T]>,
}

impl<'a, T: Sample> SharedSamples<'a, T> {
    /// A view of `bytes` as samples; the caller has checked that the bytes
    /// hold whole samples and are aligned for `T` in memory.
    pub(crate) fn new(bytes: SharedBytes<'a>) -> Self {
        debug_assert!(bytes.len() % size_of::<T>() == 0 && bytes.as_ptr().align_offset(align_of::<T>()) == 0);
        SharedSamples { bytes, _samples: PhantomData }
    }

    /// Samples in view.
    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<T>()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index`, or `None` past the last.
    pub fn get(&self, index: usize) -> Option<T> {
        T::load(&self.bytes, index.checked_mul(size_of::<T>())?)
    }

    /// The samples in order, each read once as it is reached.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let this = *self;
        (0..this.len()).map_while(move |i| this.get(i))
    }

    /// Copies the samples into `dst` (as [`SharedBytes::copy_to_slice`]).
    ///
    /// # Panics
    ///
    /// If `dst.len() != self.len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) {
        assert_eq!(dst.len(), self.len(), "destination and source lengths differ");
        // SAFETY: `dst` is `dst.len() * size_of::<T>()` bytes we borrow
        // exclusively; `T` (f32 or i16) has no padding and any bits are a
        // valid `T`, so its storage may be written as bytes.
        let raw = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), size_of_val(dst)) };
        self.bytes.copy_to_slice(raw);
    }

    /// A private copy of the samples.
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::default(); self.len()];
        self.copy_to_slice(&mut out);
        out
    }

    /// The samples' bytes, to hand on without a copy.
    pub fn bytes(&self) -> SharedBytes<'a> {
        self.bytes
    }

    /// The samples as a slice, for callers that trust every producer of
    /// the ring.
    ///
    /// # Safety
    ///
    /// As [`SharedBytes::as_slice`]: nothing may write the samples while
    /// the slice lives.
    pub unsafe fn as_slice(&self) -> &'a [T] {
        // SAFETY: the caller promises the bytes stay unwritten; they are
        // readable for `'a`, hold `len()` whole samples and are aligned for
        // `T` (checked by the view's maker), and any bits are a valid `T`.
        unsafe { std::slice::from_raw_parts(self.bytes.as_slice().as_ptr().cast::<T>(), self.len()) }
    }
}
