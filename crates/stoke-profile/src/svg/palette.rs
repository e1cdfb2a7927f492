//! Colours of the SVG's frames. By default ([`SvgPalette::Kind`]) by what a
//! frame is: user code, inlined code, kernel, JIT, off-CPU time, or stoke's
//! own markers and the process and thread roots. Each kind has its own hue;
//! the name only varies the shade, so colours say what stoke knows and
//! nothing it does not. [`SvgPalette::Hot`] gives every frame the classic
//! flame-graph warm colours, [`SvgPalette::Mono`] greys for print.

use inferno::flamegraph::color::Color;

/// How an SVG flame graph's frames are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SvgPalette {
    /// A hue per frame kind (user red, inlined aqua, kernel orange, JIT
    /// green, off-CPU blue, roots and markers grey), the shade by name.
    #[default]
    Kind,
    /// The classic flame-graph colours: every frame red to yellow by name,
    /// whatever its kind.
    Hot,
    /// Greys for print: a lighter or darker band per frame kind, the shade
    /// by name.
    Mono,
}

impl SvgPalette {
    /// Every palette, the default first.
    pub const ALL: [SvgPalette; 3] = [SvgPalette::Kind, SvgPalette::Hot, SvgPalette::Mono];

    /// Its name on the command line and in the documentation.
    pub fn name(self) -> &'static str {
        match self {
            SvgPalette::Kind => "kind",
            SvgPalette::Hot => "hot",
            SvgPalette::Mono => "mono",
        }
    }

    /// The legend's entries for the kinds `present` (in legend order): a
    /// swatch and a label each. [`SvgPalette::Hot`] colours no kind apart,
    /// so its legend is one entry.
    pub(crate) fn legend(self, present: impl Iterator<Item = Hue>) -> Vec<(Color, &'static str)> {
        match self {
            SvgPalette::Hot => vec![(Hue::User.swatch(self), "every frame, shade by name")],
            SvgPalette::Kind | SvgPalette::Mono => {
                present.map(|hue| (hue.swatch(self), hue.label())).collect()
            }
        }
    }
}

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
    /// Python functions read from a CPython interpreter's frames.
    Python,
    /// Time off the CPU (`[off-cpu]`, `[blocked: NAME]`, `[runnable]`,
    /// `[syscall: NAME]`).
    OffCpu,
    /// The process and thread roots and stoke's markers (`[truncated: …]`,
    /// `[unknown]`).
    Other,
}

impl Hue {
    /// Every hue, in legend order.
    pub(crate) const ALL: [Hue; 7] = [
        Hue::User,
        Hue::Inline,
        Hue::Kernel,
        Hue::Jit,
        Hue::Python,
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
            Hue::Python => "Python",
            Hue::OffCpu => "off-CPU",
            Hue::Other => "process, thread, marker",
        }
    }

    /// The (base, spread) of red, green and blue in `palette`: the colour of
    /// a name is base + spread × v for a v in [0, 1) from the name's hash.
    fn range(self, palette: SvgPalette) -> [(u8, u8); 3] {
        match palette {
            SvgPalette::Kind => match self {
                Hue::User => [(205, 50), (60, 70), (50, 50)],
                Hue::Inline => [(60, 50), (175, 50), (185, 50)],
                Hue::Kernel => [(225, 30), (135, 45), (0, 30)],
                Hue::Jit => [(55, 50), (175, 60), (55, 40)],
                Hue::Python => [(150, 50), (90, 50), (200, 45)],
                Hue::OffCpu => [(75, 35), (115, 45), (205, 45)],
                Hue::Other => [(150, 40), (150, 40), (150, 40)],
            },
            // Red through orange to yellow, as flame graphs first were.
            SvgPalette::Hot => [(205, 50), (0, 230), (0, 55)],
            SvgPalette::Mono => {
                let (base, spread) = match self {
                    Hue::User => (202, 24),
                    Hue::Inline => (229, 23),
                    Hue::Kernel => (152, 24),
                    Hue::Jit => (179, 11),
                    Hue::Python => (191, 10),
                    Hue::OffCpu => (128, 20),
                    Hue::Other => (105, 20),
                };
                [(base, spread); 3]
            }
        }
    }

    /// The colour of the middle of the range, for the legend.
    pub(crate) fn swatch(self, palette: SvgPalette) -> Color {
        self.color_at(palette, 0.5)
    }

    fn color_at(self, palette: SvgPalette, v: f64) -> Color {
        let [r, g, b] = self.range(palette).map(|(base, spread)| {
            (f64::from(base) + f64::from(spread) * v).round().min(255.0) as u8
        });
        Color { r, g, b }
    }

    /// The colour of `name` in this hue and `palette`: the same name always
    /// gets the same colour.
    pub(crate) fn color(self, palette: SvgPalette, name: &str) -> Color {
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
        self.color_at(palette, (hash >> 11) as f64 / (1u64 << 53) as f64)
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
        let kind = SvgPalette::Kind;
        assert_eq!(Hue::User.color(kind, "main"), Hue::User.color(kind, "main"));
        let kernel = Hue::Kernel.color(kind, "do_syscall_64");
        assert!(kernel.r > 220 && kernel.b <= 30, "{kernel:?}");
        let inline = Hue::Inline.color(kind, "x");
        assert!(inline.g > inline.r && inline.b > inline.r, "{inline:?}");
        // Names with dots or capitals are user code like any other.
        for name in [
            "liblzma.so.5.4.1+0x1234",
            "PyDict_New",
            "init_cpu_features.constprop.0",
        ] {
            let c = Hue::User.color(kind, name);
            assert!(c.r >= 205 && c.g <= 130, "{name}: {c:?}");
        }
    }

    #[test]
    fn hot_is_warm_for_every_kind_and_mono_is_grey_by_kind() {
        for hue in Hue::ALL {
            for name in ["main", "do_syscall_64", "JS:*loop"] {
                let hot = hue.color(SvgPalette::Hot, name);
                assert!(
                    hot.r >= 205 && hot.b <= 55 && hot.g >= hot.b,
                    "{hue:?} {hot:?}"
                );
                let grey = hue.color(SvgPalette::Mono, name);
                assert!(grey.r == grey.g && grey.g == grey.b, "{hue:?} {grey:?}");
            }
        }
        // Mono's bands do not overlap: the kind still shows in print.
        let mut bands: Vec<(u8, u8)> = Hue::ALL
            .iter()
            .map(|h| {
                let [(base, spread), _, _] = h.range(SvgPalette::Mono);
                (base, base + spread)
            })
            .collect();
        bands.sort();
        assert!(bands.windows(2).all(|w| w[0].1 <= w[1].0), "{bands:?}");
        assert_eq!(SvgPalette::Hot.legend(Hue::ALL.into_iter()).len(), 1);
        assert_eq!(SvgPalette::Mono.legend(Hue::ALL.into_iter()).len(), 7);
    }
}
