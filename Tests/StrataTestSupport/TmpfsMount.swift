import Foundation
import StrataTestSupport

/// Mounting needs privileges CI machines may not grant: tests that need a
/// tmpfs run where `mount` works and are reported as skipped elsewhere.
public let canMountTmpfs: Bool = (try? TmpfsMount(size: "1m")) != nil

/// A tmpfs mounted for one test (a small disk that fills up, or one to mount
/// read-only); unmounted and removed with the value.
public final class TmpfsMount {
    public let point: String

    public struct MountFailed: Error, CustomStringConvertible {
        public let description: String
    }

    public init(size: String) throws {
        point = NSTemporaryDirectory() + "strata-tmpfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        guard try Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", point]) == 0 else {
            try? FileManager.default.removeItem(atPath: point)
            throw MountFailed(description: "cannot mount a tmpfs at \(point)")
        }
    }

    /// `mount -o remount,<options>`: true if it worked.
    public func remount(_ options: String) throws -> Bool {
        try Self.run("/bin/mount", ["-o", "remount,\(options)", point]) == 0
    }

    deinit {
        _ = try? Self.run("/bin/umount", [point])
        try? FileManager.default.removeItem(atPath: point)
    }

    @discardableResult
    private static func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
