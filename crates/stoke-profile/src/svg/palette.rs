//! Colours by what a frame is: user code, inlined code, kernel, JIT,
//! off-CPU time, or stoke's own markers and the process and thread roots.
//! Each kind has its own hue; the name only varies the shade, so colours
//! say what stoke knows and nothing it does not.

use inferno::flamegraph::color::Color;

/// What a drawn frame stands for, as far as colour goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Hue {
    /// User-space code.
    User,
    /// A function inlined into its caller.
    Inline,
    /// Kernel code.
    Kernel,
    /// JIT-compiled code (named from a perf map).
    Jit,
    /// Time off the CPU (`[off-cpu]`, `[syscall: NAME]`).
    OffCpu,
    /// The process and thread roots and stoke's markers (`[truncated: …]`,
    /// `[unknown]`).
    Other,
}

impl Hue {
    /// Every hue, in legend order.
    pub(crate) const ALL: [Hue; 6] = [
        Hue::User,
        Hue::Inline,
        Hue::Kernel,
        Hue::Jit,
        Hue::OffCpu,
        Hue::Other,
    ];

    /// Its name in the legend.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Hue::User => "user",
            Hue::Inline => "inlined",
            Hue::Kernel => "kernel",
            Hue::Jit => "JIT",
            Hue::OffCpu => "off-CPU",
            Hue::Other => "process, thread, marker",
        }
    }

    /// The (base, spread) of red, green and blue: the colour of a name is
    /// base + spread × v for a v in [0, 1) from the name's hash.
    fn range(self) -> [(u8, u8); 3] {
        match self {
            Hue::User => [(205, 50), (60, 70), (50, 50)],
            Hue::Inline => [(60, 50), (175, 50), (185, 50)],
            Hue::Kernel => [(225, 30), (135, 45), (0, 30)],
            Hue::Jit => [(55, 50), (175, 60), (55, 40)],
            Hue::OffCpu => [(75, 35), (115, 45), (205, 45)],
            Hue::Other => [(150, 40), (150, 40), (150, 40)],
        }
    }

    /// The colour of the middle of the range, for the legend.
    pub(crate) fn swatch(self) -> Color {
        self.color_at(0.5)
    }

    fn color_at(self, v: f64) -> Color {
        let [r, g, b] = self.range().map(|(base, spread)| {
            (f64::from(base) + f64::from(spread) * v).round().min(255.0) as u8
        });
        Color { r, g, b }
    }

    /// The colour of `name` in this hue: the same name always gets the
    /// same colour.
    pub(crate) fn color(self, name: &str) -> Color {
        // FNV-1a, stable across runs and platforms, then a 64-bit
        // finalizer so that short names differ in the high bits too.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^= hash >> 33;
        self.color_at((hash >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// `rgb(r,g,b)`.
pub(crate) fn css(color: Color) -> String {
    format!("rgb({},{},{})", color.r, color.g, color.b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hues_are_stable_and_apart() {
        assert_eq!(Hue::User.color("main"), Hue::User.color("main"));
        let kernel = Hue::Kernel.color("do_syscall_64");
        assert!(kernel.r > 220 && kernel.b <= 30, "{kernel:?}");
        let inline = Hue::Inline.color("x");
        assert!(inline.g > inline.r && inline.b > inline.r, "{inline:?}");
        // Names with dots or capitals are user code like any other.
        for name in [
            "liblzma.so.5.4.1+0x1234",
            "PyDict_New",
            "init_cpu_features.constprop.0",
        ] {
            let c = Hue::User.color(name);
            assert!(c.r >= 205 && c.g <= 130, "{name}: {c:?}");
        }
    }
}
