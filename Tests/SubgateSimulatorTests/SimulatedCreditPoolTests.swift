import Foundation
import Testing
@testable import SubgateSimulator

/// Seed 002's deduction rules as pool arithmetic: FIFO over base and add-on grants, hard and
/// soft limits, expiry, overdraft. No store, no sockets.
@Suite struct SimulatedCreditPoolTests {
    /// Taken grants as `id:credits`, for readable expectations.
    static func taken(_ consumption: SimulatedCreditPool.Consumption) -> [String] {
        consumption.deductions.map { "\($0.grantID):\($0.credits)" }
    }

    @Test("base credits go first, then add-ons by earliest expiry, never-expiring add-ons last")
    func fifo() {
        var pool = SimulatedCreditPool(
            poolKey: "api_calls",
            credits: 3,
            addons: [(credits: 5, expiresAt: nil), (credits: 4, expiresAt: t0.addingTimeInterval(200)), (credits: 2, expiresAt: t0.addingTimeInterval(100))]
        )
        #expect(pool.grants.map(\.grantID) == ["base", "addon_1", "addon_2", "addon_3"])
        #expect(pool.balance(at: t0) == 14)
        let first = pool.consume(4, at: t0)
        #expect(Self.taken(first) == ["base:3", "addon_3:1"], "base first, then the add-on expiring soonest (addon_3, t0+100)")
        #expect(first.result == .allowed && first.remaining == 10)
        let second = pool.consume(6, at: t0)
        #expect(Self.taken(second) == ["addon_3:1", "addon_2:4", "addon_1:1"], "then t0+200, then the one that never expires")
        #expect(pool.balance(at: t0) == 4 && pool.grants.map(\.remaining) == [0, 4, 0, 0])
    }

    @Test("add-ons expiring at the same time go in the order they were added")
    func tiesInOrderAdded() {
        let expiry = t0.addingTimeInterval(60)
        var pool = SimulatedCreditPool(poolKey: "p", credits: 0, addons: [(credits: 2, expiresAt: expiry), (credits: 2, expiresAt: expiry)])
        #expect(Self.taken(pool.consume(3, at: t0)) == ["addon_1:2", "addon_2:1"])
    }

    @Test("expired grants neither count in the balance nor give credits")
    func expiry() {
        var pool = SimulatedCreditPool(poolKey: "p", credits: 10, expiresAt: t0.addingTimeInterval(30), addons: [(credits: 5, expiresAt: t0.addingTimeInterval(60))])
        #expect(pool.balance(at: t0.addingTimeInterval(29)) == 15)
        #expect(pool.balance(at: t0.addingTimeInterval(30)) == 5, "the base grant expires at its expires_at exactly")
        let late = pool.consume(5, at: t0.addingTimeInterval(45))
        #expect(Self.taken(late) == ["addon_1:5"] && late.result == .allowed && late.remaining == 0)
        #expect(pool.grants[0].remaining == 10, "the expired base grant was not touched")
        #expect(pool.consume(1, at: t0.addingTimeInterval(45)).result == .blocked)
    }

    @Test("a hard-limit pool without enough credits answers blocked and deducts nothing")
    func hardLimit() {
        var pool = SimulatedCreditPool(poolKey: "p", limit: .hard, credits: 3, addons: [(credits: 2, expiresAt: nil)])
        let blocked = pool.consume(6, at: t0)
        #expect(blocked == SimulatedCreditPool.Consumption(result: .blocked, deductions: [], overdrawn: 0, remaining: 5))
        #expect(pool.grants.map(\.remaining) == [3, 2], "nothing deducted")
        let exact = pool.consume(5, at: t0)
        #expect(exact.result == .allowed && exact.remaining == 0, "consuming the whole balance is allowed")
        #expect(pool.consume(1, at: t0).result == .blocked)
    }

    @Test("a soft-limit pool deducts anyway and answers warning once the balance is below zero")
    func softLimit() {
        var pool = SimulatedCreditPool(poolKey: "p", limit: .soft, credits: 3)
        let exact = pool.consume(3, at: t0)
        #expect(exact.result == .allowed && exact.remaining == 0, "reaching zero is not below zero")
        let over = pool.consume(2, at: t0)
        #expect(over.result == .warning && over.remaining == -2 && over.overdrawn == 2 && over.deductions.isEmpty, "\(over)")
        let partly = SimulatedCreditPool(poolKey: "q", limit: .soft, credits: 1)
        var copy = partly
        let mixed = copy.consume(4, at: t0)
        #expect(Self.taken(mixed) == ["base:1"] && mixed.overdrawn == 3 && mixed.remaining == -3 && mixed.result == .warning)
        #expect(pool.consume(1, at: t0).result == .warning, "still below zero: warning again")
        #expect(pool.balance(at: t0) == -3)
    }

    @Test("credits added to an overdrawn pool repay the overdraft first")
    func addonRepaysOverdraft() {
        var pool = SimulatedCreditPool(poolKey: "p", limit: .soft, credits: 0)
        _ = pool.consume(4, at: t0)
        #expect(pool.balance(at: t0) == -4)
        let id = pool.addAddon(credits: 10, expiresAt: t0.addingTimeInterval(60))
        #expect(id == "addon_1" && pool.overdraft == 0 && pool.grants[1].remaining == 6 && pool.balance(at: t0) == 6)
        #expect(pool.balance(at: t0.addingTimeInterval(60)) == 0, "the debt does not come back when the add-on expires")
    }
}
