//! Demangling of Rust (legacy and v0) and C++ (Itanium) names.

/// Demangles `name` if it is a Rust or C++ mangled name; returns it as is
/// otherwise. With `strip_rust_hash`, Rust legacy hashes (`::h0123…`) and v0
/// crate disambiguators are left out. A PLT stub's `@plt` suffix is kept
/// after the demangled target.
pub(crate) fn demangle(name: &str, strip_rust_hash: bool) -> String {
    if let Some(target) = name.strip_suffix("@plt") {
        return format!("{}@plt", demangle(target, strip_rust_hash));
    }
    if let Ok(rust) = rustc_demangle::try_demangle(name) {
        return if strip_rust_hash {
            format!("{rust:#}")
        } else {
            rust.to_string()
        };
    }
    if name.starts_with("_Z") {
        if let Ok(symbol) = cpp_demangle::Symbol::new(name) {
            let options = cpp_demangle::DemangleOptions::default();
            if let Ok(demangled) = symbol.demangle_with_options(&options) {
                return demangled;
            }
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn rust_legacy_names_lose_their_hash() {
        let mangled = "_ZN4core3ptr13drop_in_place17h0123456789abcdefE";
        assert_eq!(demangle(mangled, true), "core::ptr::drop_in_place");
        assert_eq!(
            demangle(mangled, false),
            "core::ptr::drop_in_place::h0123456789abcdef"
        );
    }

    #[test]
    fn rust_v0_names_demangle() {
        let mangled = "_RNvCs1234_7mycrate3foo";
        assert_eq!(demangle(mangled, true), "mycrate::foo");
        assert!(demangle(mangled, false).starts_with("mycrate["));
        assert_eq!(
            demangle("_RNvNtCs1234_7mycrate4util6helper", true),
            "mycrate::util::helper"
        );
    }

    #[test]
    fn cpp_names_demangle() {
        assert_eq!(demangle("_ZN3foo3barEv", true), "foo::bar()");
        assert_eq!(
            demangle("_ZNSt6vectorIiSaIiEE9push_backERKi", true),
            "std::vector<int, std::allocator<int> >::push_back(int const&)"
        );
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(demangle("malloc", true), "malloc");
        assert_eq!(demangle("compute.cold", true), "compute.cold");
        assert_eq!(demangle("_Znot a name", true), "_Znot a name");
    }

    #[test]
    fn plt_stubs_demangle_their_target() {
        assert_eq!(demangle("_ZN3foo3barEv@plt", true), "foo::bar()@plt");
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE@plt", true),
            "core::ptr::drop_in_place@plt"
        );
        assert_eq!(demangle("puts@plt", true), "puts@plt");
    }
}
