//! The user-space register file a sampler captures and an unwinder consumes,
//! indexed by DWARF register number (x86_64 System V numbering).

/// x86_64 DWARF register numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[allow(missing_docs)]
pub enum DwarfReg {
    Rax = 0,
    Rdx = 1,
    Rcx = 2,
    Rbx = 3,
    Rsi = 4,
    Rdi = 5,
    Rbp = 6,
    Rsp = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
    /// The return address column; holds the instruction pointer.
    Rip = 16,
}

/// Number of registers kept (DWARF 0..=16).
pub const REGISTER_COUNT: usize = 17;

/// A set of register values, each present or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    values: [u64; REGISTER_COUNT],
    present: u32,
}

impl Registers {
    /// Registers with only the three an unwinder always needs.
    pub fn new(ip: u64, sp: u64, bp: u64) -> Registers {
        let mut r = Registers::default();
        r.set(DwarfReg::Rip, ip);
        r.set(DwarfReg::Rsp, sp);
        r.set(DwarfReg::Rbp, bp);
        r
    }

    /// Sets a register.
    pub fn set(&mut self, reg: DwarfReg, value: u64) {
        self.values[reg as usize] = value;
        self.present |= 1 << reg as u32;
    }

    /// Sets a register by DWARF number; numbers past 16 are ignored.
    pub fn set_dwarf(&mut self, number: u16, value: u64) {
        if (number as usize) < REGISTER_COUNT {
            self.values[number as usize] = value;
            self.present |= 1 << number;
        }
    }

    /// Forgets a register (its value is no longer known).
    pub fn clear(&mut self, reg: DwarfReg) {
        self.present &= !(1 << reg as u32);
    }

    /// Forgets a register by DWARF number; numbers past 16 are ignored.
    pub fn clear_dwarf(&mut self, number: u16) {
        if (number as usize) < REGISTER_COUNT {
            self.present &= !(1 << number);
        }
    }

    /// A register's value, if known.
    pub fn get(&self, reg: DwarfReg) -> Option<u64> {
        self.get_dwarf(reg as u16)
    }

    /// A register's value by DWARF number, if known.
    pub fn get_dwarf(&self, number: u16) -> Option<u64> {
        if (number as usize) < REGISTER_COUNT && self.present & (1 << number) != 0 {
            Some(self.values[number as usize])
        } else {
            None
        }
    }

    /// The instruction pointer (0 if unknown).
    pub fn ip(&self) -> u64 {
        self.get(DwarfReg::Rip).unwrap_or(0)
    }

    /// The stack pointer (0 if unknown).
    pub fn sp(&self) -> u64 {
        self.get(DwarfReg::Rsp).unwrap_or(0)
    }

    /// The frame pointer (0 if unknown).
    pub fn bp(&self) -> u64 {
        self.get(DwarfReg::Rbp).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_remember_which_are_known() {
        let mut r = Registers::new(0x10, 0x20, 0x30);
        assert_eq!(r.get(DwarfReg::Rbx), None);
        r.set_dwarf(3, 7);
        assert_eq!(r.get(DwarfReg::Rbx), Some(7));
        r.clear(DwarfReg::Rbp);
        assert_eq!(r.get(DwarfReg::Rbp), None);
        r.clear_dwarf(3);
        assert_eq!(r.get(DwarfReg::Rbx), None);
        r.set_dwarf(99, 1);
        assert_eq!((r.ip(), r.sp()), (0x10, 0x20));
    }
}
