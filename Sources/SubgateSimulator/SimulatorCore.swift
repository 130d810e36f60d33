import Foundation
import NIOCore
import NIOConcurrencyHelpers

/// Everything a running simulator shares between its connections, behind one lock: the
/// store, and the open connections so that `stop()` can close them.
struct SimulatorState: Sendable {
    var store: SimulatorStore
    var connections: [ObjectIdentifier: any Channel] = [:]
    var stopped = false
}

/// The lock-holding driver around `SimulatorStore`: it reads the wall clock, mutates the
/// store under the lock, and hands the decision back to the channel handler, which does
/// the I/O outside the lock.
final class SimulatorCore: Sendable {
    private let state: NIOLockedValueBox<SimulatorState>

    init(store: SimulatorStore) {
        self.state = NIOLockedValueBox(SimulatorState(store: store))
    }

    /// Runs `body` on the store under the lock, with the current time.
    func withStore<Result: Sendable>(_ body: (inout SimulatorStore, Date) -> Result) -> Result {
        let now = Date()
        return self.state.withLockedValue { state in body(&state.store, now) }
    }

    func plan(_ request: SimulatorRequest) -> SimulatorPlan {
        self.withStore { store, now in store.plan(request, now: now) }
    }

    func serve(_ endpoint: SimulatedEndpoint, _ request: SimulatorRequest) -> SimulatorAction {
        self.withStore { store, now in store.serve(endpoint, request, now: now) }
    }

    func finishForward(_ forward: GatewayForward, _ outcome: SellerOutcome) -> SimulatorResponse {
        self.withStore { store, now in store.finishForward(forward, outcome, now: now) }
    }

    // MARK: - Connections

    /// Tracks a new connection until it closes; false once the simulator is stopping.
    func register(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let accepted = self.state.withLockedValue { state in
            if state.stopped { return false }
            state.connections[id] = channel
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { _ in
                self.state.withLockedValue { state in _ = state.connections.removeValue(forKey: id) }
            }
        }
        return accepted
    }

    /// Refuses new connections from now on; the ones open at this moment.
    func stopAccepting() -> [any Channel] {
        self.state.withLockedValue { state in
            state.stopped = true
            return Array(state.connections.values)
        }
    }
}
