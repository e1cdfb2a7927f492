//! Reading a process's memory: a trait, and `process_vm_readv` behind it.

use std::io::IoSliceMut;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid as NixPid;

use crate::PythonError;

/// Memory of the target process.
pub trait Memory {
    /// Fills `buf` from address `addr`; fails unless all of it was read.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), PythonError>;

    /// Fills several buffers in one go (one system call for the real
    /// process); fails unless all of them were read.
    fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> Result<(), PythonError> {
        for (addr, buf) in requests.iter_mut() {
            self.read(*addr, buf)?;
        }
        Ok(())
    }
}

/// Reads a little-endian `u64`.
pub fn read_u64(memory: &dyn Memory, addr: u64) -> Result<u64, PythonError> {
    let mut b = [0u8; 8];
    memory.read(addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// The memory of a live process, read with `process_vm_readv`.
#[derive(Clone, Copy, Debug)]
pub struct ProcessMemory {
    pid: i32,
}

impl ProcessMemory {
    /// The memory of process `pid`.
    pub fn new(pid: i32) -> ProcessMemory {
        ProcessMemory { pid }
    }
}

/// At most this many pieces per system call (the kernel's `UIO_MAXIOV` is 1024).
const MAX_IOV: usize = 512;

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), PythonError> {
        self.read_many(&mut [(addr, buf)])
    }

    fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> Result<(), PythonError> {
        for chunk in requests.chunks_mut(MAX_IOV) {
            let remote: Vec<RemoteIoVec> = chunk
                .iter()
                .map(|(addr, buf)| RemoteIoVec {
                    base: *addr as usize,
                    len: buf.len(),
                })
                .collect();
            let want: usize = remote.iter().map(|r| r.len).sum();
            let mut local: Vec<IoSliceMut> =
                chunk.iter_mut().map(|(_, b)| IoSliceMut::new(b)).collect();
            let got = process_vm_readv(NixPid::from_raw(self.pid), &mut local, &remote)
                .map_err(|e| PythonError::Read(e as i32))?;
            if got != want {
                return Err(PythonError::Read(libc_efault()));
            }
        }
        Ok(())
    }
}

fn libc_efault() -> i32 {
    nix::errno::Errno::EFAULT as i32
}

/// A fake memory for tests: pieces of bytes at addresses.
#[derive(Clone, Debug, Default)]
pub struct FakeMemory {
    pieces: Vec<(u64, Vec<u8>)>,
}

impl FakeMemory {
    /// Places `bytes` at `addr`.
    pub fn put(&mut self, addr: u64, bytes: &[u8]) {
        self.pieces.push((addr, bytes.to_vec()));
    }

    /// Places a little-endian `u64` at `addr`.
    pub fn put_u64(&mut self, addr: u64, value: u64) {
        self.put(addr, &value.to_le_bytes());
    }
}

impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), PythonError> {
        'byte: for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            // Later pieces override earlier ones.
            for (start, bytes) in self.pieces.iter().rev() {
                if a >= *start && a < start + bytes.len() as u64 {
                    *b = bytes[(a - start) as usize];
                    continue 'byte;
                }
            }
            return Err(PythonError::Read(libc_efault()));
        }
        Ok(())
    }
}
