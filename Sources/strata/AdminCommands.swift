import ArgumentParser
import Foundation
import StrataClient

/// `strata tenant …`: tenants (with the server admin key) and per-tenant
/// maintenance (with the tenant's admin key or the server admin key).
struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant",
        abstract: "Create, list, delete, inspect, back up, restore, verify and compact tenants.",
        discussion: """
        create, list, set-quota, delete and restore need the server admin key (--api-key, or STRATA_ADMIN_KEY); \
        stats, backup, verify and compact need an admin key of that tenant or the server admin key.
        """,
        subcommands: [Create.self, List.self, SetQuota.self, Delete.self, Stats.self, Backup.self, Restore.self, Verify.self, Compact.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant.")
        @Argument(help: "Tenant name: lowercase letters, digits and '-'.") var name: String
        @Option(help: "Size quota in MiB (default: the server's storage.map_size_mib).") var maxSizeMib: UInt64?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(asServerAdmin: true)
                defer { client.close() }
                let info = try await client.createTenant(name, maxSizeBytes: (maxSizeMib ?? 0) << 20)
                if connection.json { printJSON(TenantOutput(info)) } else {
                    print("created tenant '\(info.name)' (quota \(formatBytes(info.maxSizeBytes)))")
                    print("next: strata key create --tenant \(info.name) --role admin")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(asServerAdmin: true)
                defer { client.close() }
                for info in try await client.tenants() {
                    if connection.json { printJSON(TenantOutput(info)) } else {
                        print("\(info.name)\tquota \(formatBytes(info.maxSizeBytes))\tcreated \(formatTime(info.createdAt))")
                    }
                }
            }
        }
    }

    struct SetQuota: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-quota", abstract: "Change a tenant's size quota (it is briefly unavailable while it reopens).")
        @Argument(help: "Tenant name.") var name: String
        @Option(help: "New quota in MiB; 0: the server's storage.map_size_mib.") var maxSizeMib: UInt64
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(asServerAdmin: true)
                defer { client.close() }
                let info = try await client.setTenantQuota(name, maxSizeBytes: maxSizeMib << 20)
                if connection.json { printJSON(TenantOutput(info)) } else {
                    print("tenant '\(info.name)' quota is now \(formatBytes(info.maxSizeBytes))")
                }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a tenant: end its subscriptions, stop its projections, remove its keys and files.")
        @Argument(help: "Tenant name.") var name: String
        @Option(help: "Repeat the tenant's name to confirm (or answer the prompt).") var confirm: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            var confirmation = confirm
            if confirmation == nil {
                guard isatty(STDIN_FILENO) != 0 else {
                    throw InputError("deleting '\(name)' removes all its events; pass --confirm \(name)")
                }
                FileHandle.standardError.write(Data("This deletes tenant '\(name)' and every event in it. Type its name to confirm: ".utf8))
                confirmation = readLine() ?? ""
            }
            guard confirmation == name else { throw InputError("confirmation does not match '\(name)'; nothing was deleted") }
            try await runClient {
                let client = try await connection.connect(asServerAdmin: true)
                defer { client.close() }
                let result = try await client.deleteTenant(name, confirm: name)
                if connection.json {
                    printJSON(TenantDeletedOutput(deleted: name, callsEnded: result.callsEnded,
                                                  projectionsStopped: result.projectionsStopped, keysRemoved: result.keysRemoved))
                } else {
                    print("deleted tenant '\(name)' (\(result.callsEnded) streaming call(s) ended, \(result.projectionsStopped) projection(s) stopped, \(result.keysRemoved) key(s) removed)")
                }
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Events, streams, size, quota, last write and projection lag.")
        @Argument(help: "Tenant name (default: --tenant).") var name: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(tenant: name)
                defer { client.close() }
                let s = try await client.tenantStats()
                if connection.json {
                    printJSON(TenantStatsOutput(s))
                    return
                }
                let share = s.maxSizeBytes == 0 ? 0 : Double(s.usedBytes) / Double(s.maxSizeBytes) * 100
                print("tenant \(s.name)")
                print("  events       \(s.events) (head position \(s.headPosition))")
                print("  streams      \(s.streams)")
                print("  last write   \(s.lastWriteAt.map(formatTime) ?? "never")")
                print("  used         \(formatBytes(s.usedBytes)) of \(formatBytes(s.maxSizeBytes)) quota (\(String(format: "%.1f", share))%); file \(formatBytes(s.fileBytes))")
                for p in s.projections {
                    print("  projection   \(p.name): \(p.state), position \(p.position), lag \(p.lag)")
                }
            }
        }
    }

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Back a tenant up on the server while writes go on (a consistent, compacted copy).")
        @Argument(help: "Tenant name (default: --tenant).") var name: String?
        @Option(help: "Backup name: written to <backup directory>/<tenant>/<name>/ on the server.") var to: String
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(tenant: name)
                defer { client.close() }
                let bar = ProgressBar(enabled: !connection.json)
                let result = try await client.backupTenant(name: to) { bar.show($0) }
                bar.finish()
                if connection.json {
                    printJSON(BackupOutput(backup: result.name, path: result.path, bytes: result.bytes, headPositionAtLeast: result.headPositionAtLeast))
                } else {
                    print("backed up as \(result.path) in the server's backup directory (\(formatBytes(result.bytes)); every event up to position \(result.headPositionAtLeast) at least)")
                    print("restore with: strata tenant restore <new-name> --from \(result.path)")
                }
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant from a backup taken by `strata tenant backup`.")
        @Argument(help: "The new tenant's name (it must not exist).") var name: String
        @Option(help: "The backup as `tenant backup` printed it: <tenant>/<backup name>.") var from: String
        @Option(help: "Size quota in MiB (default: the server's storage.map_size_mib).") var maxSizeMib: UInt64?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(asServerAdmin: true)
                defer { client.close() }
                let bar = ProgressBar(enabled: !connection.json)
                let info = try await client.restoreTenant(name, fromBackup: from, maxSizeBytes: (maxSizeMib ?? 0) << 20) { bar.show($0) }
                bar.finish()
                if connection.json { printJSON(TenantOutput(info)) } else {
                    print("restored tenant '\(info.name)' from backup '\(from)'")
                    print("next: strata tenant verify \(info.name); strata key create --tenant \(info.name) --role admin")
                }
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk every index and report each inconsistency; exit status 3 when there are any.")
        @Argument(help: "Tenant name (default: --tenant).") var name: String?
        @Option(help: "Most issues to list (all are counted).") var maxIssues: UInt32 = 100
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(tenant: name)
                defer { client.close() }
                let bar = ProgressBar(enabled: !connection.json)
                let result = try await client.verifyTenant(maxIssues: maxIssues) { bar.show($0) }
                bar.finish()
                if connection.json {
                    printJSON(VerifyOutput(result))
                } else {
                    print("checked \(result.eventsChecked) events, \(result.streamsChecked) streams, \(result.indexEntriesChecked) index entries (head \(result.headPosition))")
                    if result.isConsistent {
                        print("consistent: no issues")
                    } else {
                        for issue in result.issues {
                            var line = "  \(issue.kind)"
                            if issue.position > 0 { line += " at \(issue.position)" }
                            if !issue.stream.isEmpty { line += " [\(issue.stream)]" }
                            print(line + ": " + issue.detail)
                        }
                        print("\(result.issueCount) issue(s)")
                    }
                }
                if !result.isConsistent { throw ExitCode(3) }
            }
        }
    }

    struct Compact: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rewrite a tenant's file without free pages. The tenant is unavailable meanwhile.")
        @Argument(help: "Tenant name (default: --tenant).") var name: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect(tenant: name)
                defer { client.close() }
                let bar = ProgressBar(enabled: !connection.json)
                let sizes = try await client.compactTenant { bar.show($0) }
                bar.finish()
                if connection.json { printJSON(CompactOutput(bytesBefore: sizes.bytesBefore, bytesAfter: sizes.bytesAfter)) } else {
                    print("compacted: \(formatBytes(sizes.bytesBefore)) → \(formatBytes(sizes.bytesAfter))")
                }
            }
        }
    }
}

/// `strata key …`: API keys of a tenant (its admin key or the server admin key).
struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Create, list and revoke a tenant's API keys.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; its secret is printed once.")
        @Option(help: "read, write or admin.") var role: String
        @Option(help: "A note to tell keys apart.") var label = ""
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            guard let role = KeyRole(rawValue: role) else { throw InputError("--role must be read, write or admin, not '\(role)'") }
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                let (key, secret) = try await client.createKey(role: role, label: label)
                if connection.json { printJSON(KeyOutput(key, secret: secret)) } else {
                    print("created \(role.rawValue) key \(key.id) for tenant '\(key.tenant)'; its secret, shown only now:")
                    print(secret)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tenant's keys (never their secrets).")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                for key in try await client.keys() {
                    if connection.json { printJSON(KeyOutput(key)) } else {
                        let state = key.revokedAt.map { "revoked \(formatTime($0))" } ?? "active"
                        print("\(key.id)\t\(key.role?.rawValue ?? "?")\t\(state)\tcreated \(formatTime(key.createdAt))\t\(key.label)")
                    }
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a key: its next call fails and its open subscriptions end at once.")
        @Argument(help: "Key id (the part after 'strata_', as `key list` shows).") var id: String
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                let key = try await client.revokeKey(id)
                if connection.json { printJSON(KeyOutput(key)) } else { print("revoked key \(key.id) of tenant '\(key.tenant)'") }
            }
        }
    }
}

/// A one-line progress bar on stderr, redrawn in place.
final class ProgressBar: Sendable {
    let enabled: Bool
    init(enabled: Bool) { self.enabled = enabled }

    func show(_ progress: OperationProgress) {
        guard enabled else { return }
        let line: String
        if let share = progress.fraction {
            let filled = Int(share * 30)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
            line = String(format: "\r%@ [%@] %5.1f%% ", progress.phase, bar, share * 100) + amount(progress.done, progress.unit)
        } else {
            line = "\r\(progress.phase) " + amount(progress.done, progress.unit)
        }
        FileHandle.standardError.write(Data((line + "   ").utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func amount(_ value: UInt64, _ unit: String) -> String {
        unit == "bytes" ? formatBytes(value) : "\(value) \(unit)"
    }
}

func formatBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}
