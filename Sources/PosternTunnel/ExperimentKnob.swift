#if canImport(Glibc)
    import Glibc
#endif

/// TEMPORARY: measurement knobs for one experiment build; removed before merge.
enum ExperimentKnob {
    static func int(_ name: String, _ fallback: Int) -> Int {
        guard let v = getenv(name), let n = Int(String(cString: v)) else { return fallback }
        return n
    }
}
