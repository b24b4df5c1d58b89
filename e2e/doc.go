// Package e2e tests wsactor's browser side in a real browser: the chat
// example's page (examples/chat), the game example's (examples/game) and the
// browser client (client/web), in headless Chromium driven by chromedp over
// the DevTools protocol. The game's cluster test runs its nodes as processes
// (this test binary again, see gamenode_test.go) on a real redis-server
// (internal/redistest), so that it can SIGKILL one.
//
// The tests need a Chromium binary: /usr/bin/chromium (Debian's "chromium"
// package), or the one named by $WSACTOR_CHROMIUM. Without one they skip,
// loudly, unless $WSACTOR_REQUIRE_BROWSER is 1, as .ci/run sets it under
// CI: there a missing browser fails the run rather than hiding the tests.
//
// $WSACTOR_E2E_ARTIFACTS names a directory that receives the screenshots too
// (they always go to the test's temporary directory, which is removed).
package e2e
