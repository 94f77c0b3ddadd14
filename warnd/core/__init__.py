"""The pure core: decisions with no I/O (policy, targeting, the 叫应 state machine, planning,
reply grammar, templates, thresholds). Nothing here imports db/, engine/, channels/ or any
package that does; tests exercise it exhaustively without a database."""
