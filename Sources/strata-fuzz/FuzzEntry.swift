import CFuzzerDriver
import Foundation
import StrataFuzzing

/// libFuzzer's entry point. The target comes from `STRATA_FUZZ_TARGET`
/// (frames, calls, payloads, connections, client-connections), read once. Built with
/// `-sanitize=fuzzer,address -DFUZZING` by `scripts/fuzz.sh`.
private let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["STRATA_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        FuzzFailure.stop("set STRATA_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func strataFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

#if FUZZING
/// SwiftPM links an executable's entry point under this name; with the
/// fuzzer it starts libFuzzer's driver (its own `main` is not linked).
@_cdecl("strata_fuzz_main")
public func strataFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        strataFuzzOneInput(data, size)
    }
}
#else
/// Without the fuzzer: replays inputs, `strata-fuzz <target> <file or directory>…`
/// (how a crash the fuzzer found is reproduced under a debugger).
@main
struct ReplayInputs {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count > 1 else {
            print("usage: strata-fuzz <\(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|"))> <file or directory>…")
            exit(2)
        }
        var count = 0
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                print("no such file: \(path)")
                exit(2)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { (path as NSString).appendingPathComponent($0) }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                data.withUnsafeBytes { target.run($0) }
                count += 1
            }
        }
        print("replayed \(count) input(s) through \(target.rawValue): no invariant broken")
    }
}
#endif
