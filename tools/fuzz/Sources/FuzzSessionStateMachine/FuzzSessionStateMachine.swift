import SessionFuzz

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// libFuzzer target for the session state machines. The driver — the script format, the harness and
// every invariant — is `SessionFuzzHarness` in Tests/PosternCoreTests/SessionFuzz (the `SessionFuzz`
// module here, through a symlink), the same code the unit tests replay the corpus and past crashes with.

/// POSTERN_FUZZ_TRACE=1 prints every command and action: for reading a crash's script.
let tracing = getenv("POSTERN_FUZZ_TRACE") != nil

/// Unbuffered, so the trace is complete when the process stops.
func trace(_ line: String) { fputs(line + "\n", stderr) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let script = Array(UnsafeRawBufferPointer(start: start, count: count))
    do {
        try SessionFuzzHarness.run(script, trace: tracing ? trace : nil)
    } catch {
        // A broken invariant: libFuzzer saves the input. fatalError keeps its message in release.
        fatalError("\(error)")
    }
    return 0
}
