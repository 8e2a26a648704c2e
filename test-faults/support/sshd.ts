/**
 * The loopback sshd of transport-ssh's tests (generated keys and config, a dedicated user, `tini -s` as a
 * subreaper, full teardown), shared by the fault suite.
 */
export * from "../../packages/transport-ssh/test/harness/Sshd.js"
