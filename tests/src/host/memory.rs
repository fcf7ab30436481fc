//! Bounds-checked access to guest linear memory.
//!
//! Every pointer and length that comes from the guest is resolved by [`guest_range`] (checked
//! addition, then compared with the memory size) before any byte is touched, so a wrong pointer
//! becomes a [`MemoryAccessError`] — which the host functions turn into a trap — never a panic
//! or an access outside the guest's memory.

use std::fmt;
use std::ops::Range;

/// A guest pointer/length pair that does not lie inside the guest's linear memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAccessError {
    /// Guest address of the first byte.
    pub ptr: u32,
    /// Number of bytes requested.
    pub len: u64,
    /// Size of the guest memory at the time of the access.
    pub memory_size: usize,
}

impl fmt::Display for MemoryAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest memory access out of bounds: {} bytes at 0x{:x} (memory is {} bytes)",
            self.len, self.ptr, self.memory_size
        )
    }
}

impl std::error::Error for MemoryAccessError {}

/// The byte range `ptr .. ptr + len` of a memory of `memory_size` bytes, if it fits.
pub fn guest_range(memory_size: usize, ptr: u32, len: u64) -> Result<Range<usize>, MemoryAccessError> {
    let error = MemoryAccessError { ptr, len, memory_size };
    let start = usize::try_from(ptr).map_err(|_| error)?;
    let len = usize::try_from(len).map_err(|_| error)?;
    let end = start.checked_add(len).ok_or(error)?;
    if end > memory_size {
        return Err(error);
    }
    Ok(start..end)
}

/// Borrows `len` guest bytes at `ptr`.
pub fn read(memory: &[u8], ptr: u32, len: u32) -> Result<&[u8], MemoryAccessError> {
    let range = guest_range(memory.len(), ptr, u64::from(len))?;
    memory.get(range).ok_or(MemoryAccessError { ptr, len: u64::from(len), memory_size: memory.len() })
}

/// Copies `bytes` into guest memory at `ptr`.
pub fn write(memory: &mut [u8], ptr: u32, bytes: &[u8]) -> Result<(), MemoryAccessError> {
    let memory_size = memory.len();
    let len = bytes.len() as u64;
    let range = guest_range(memory_size, ptr, len)?;
    let target = memory.get_mut(range).ok_or(MemoryAccessError { ptr, len, memory_size })?;
    target.copy_from_slice(bytes);
    Ok(())
}

/// Reads a little-endian `u32` (wasm is little-endian) at `ptr`.
pub fn read_u32(memory: &[u8], ptr: u32) -> Result<u32, MemoryAccessError> {
    let mut word = [0u8; 4];
    word.copy_from_slice(read(memory, ptr, 4)?);
    Ok(u32::from_le_bytes(word))
}

/// Writes a little-endian `u32` at `ptr`.
pub fn write_u32(memory: &mut [u8], ptr: u32, value: u32) -> Result<(), MemoryAccessError> {
    write(memory, ptr, &value.to_le_bytes())
}

/// Writes a little-endian `u64` at `ptr`.
pub fn write_u64(memory: &mut [u8], ptr: u32, value: u64) -> Result<(), MemoryAccessError> {
    write(memory, ptr, &value.to_le_bytes())
}

/// Reinterprets a wasm `i32` argument as the unsigned 32-bit address or size it carries.
pub fn addr(value: i32) -> u32 {
    value as u32
}
