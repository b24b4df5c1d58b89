package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// The game's page (examples/game) in the browser. The page keeps its state
// on window.game (see examples/game/gameserver/static/app.js); the tests read
// it there, and the DOM where a player would look.

// gameWelcome is the page's last welcome (game.welcome).
type gameWelcome struct {
	ID     string  `json:"id"`
	Room   string  `json:"room"`
	Seat   int     `json:"seat"`
	Token  string  `json:"token"`
	Node   string  `json:"node"`
	Again  bool    `json:"again"`
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

// gamePlayer is a player in the page's last state.
type gamePlayer struct {
	Seat   int     `json:"seat"`
	Name   string  `json:"name"`
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	Score  int     `json:"score"`
	Online bool    `json:"online"`
}

// startGame serves the game on a fresh loopback port in this process and
// returns its base URL.
func startGame(t *testing.T) string {
	t.Helper()
	l := listen(t, "127.0.0.1:0")
	base := "http://" + l.Addr().String()
	mux, s := gameserver.New(gameserver.Config{Address: l.Addr().String(), Peers: []string{base}, Logger: slog.New(slog.DiscardHandler)})
	serve(t, s, mux, l)
	return base
}

// newGamePage opens a page that believes it has the focus, as each player's
// window would: keys reach it, and it does not stop its dot on blur.
func newGamePage(t *testing.T, browser context.Context, name string) *page {
	t.Helper()
	p := newPage(t, browser, name)
	p.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		return err
	}))
	return p
}

// openLobby loads the page and waits for the lobby.
func openLobby(p *page, base string) {
	p.t.Helper()
	p.do(chromedp.Navigate(base + "/"))
	p.waitFor("the lobby is shown", `window.game !== undefined && !document.getElementById("lobby").hidden`)
}

// setName types the player's name into the lobby.
func setName(p *page, name string) {
	p.t.Helper()
	p.do(chromedp.SetValue(chromedp.ID("name"), name))
}

// waitSeated waits until the page plays with a seat (after its welcome
// number n, counting from 1) and returns the welcome.
func waitSeated(p *page, n int) gameWelcome {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("welcome %d and the state", n), fmt.Sprintf(
		`game.conn === "playing" && game.welcomes.length >= %d && game.statesSinceWelcome > 0 && game.me() !== null &&
		 !document.getElementById("arena").hidden && document.getElementById("conn").textContent === "connected"`, n))
	return eval[gameWelcome](p, `game.welcome`)
}

// seen returns the player of seat as the page's last state has it.
func seen(p *page, seat int) gamePlayer {
	p.t.Helper()
	v := eval[*gamePlayer](p, fmt.Sprintf(`game.latest && game.latest.players.find((p) => p.seat === %d) || null`, seat))
	if v == nil {
		p.t.Fatalf("%s: seat %d is not in the state\n%s", p.name, seat, p.describe())
	}
	return *v
}

// waitSeen waits until the page's state shows seat matching the JavaScript
// condition on p (the player), e.g. "p.x > 300".
func waitSeen(pg *page, what string, seat int, cond string) gamePlayer {
	pg.t.Helper()
	pg.waitFor(what, fmt.Sprintf(`(() => { const p = game.latest && game.latest.players.find((p) => p.seat === %d); return !!p && (%s); })()`, seat, cond))
	return seen(pg, seat)
}

// key presses (down) or releases a key as the keyboard does: a real
// DevTools input event, not a synthetic DOM event.
func key(p *page, down bool, code string, repeat bool) {
	p.t.Helper()
	vk := map[string]int64{"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40}[code]
	typ := input.DispatchKeyEventTypeKeyUp
	if down {
		typ = input.DispatchKeyEventTypeRawKeyDown
	}
	p.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: code, Code: code, WindowsVirtualKeyCode: vk, NativeVirtualKeyCode: vk, AutoRepeat: &repeat,
		})
		return err
	}))
}

// collectCoin steers the page's dot to the nearest coin with the page's own
// keyboard handling (DOM key events on window, as the keys' listeners get
// them) until its score goes up, lets go of the keys, and returns the score
// once the dot has stopped. The room moves the dot until the key-up reaches
// it, a tick or two after the page saw the point, and a dot still moving can
// pick up another coin: a CI run saw a score of 1 returned and 2 kept. Only
// a moving dot picks up coins, so the score of a stopped dot is final.
func collectCoin(p *page) int {
	p.t.Helper()
	return eval[int](p, `(async () => {
		const start = game.me().score;
		const deadline = Date.now() + 15000;
		const held = new Set();
		const want = (codes) => {
			for (const c of [...held]) if (!codes.includes(c)) { window.dispatchEvent(new KeyboardEvent("keyup", { code: c, key: c })); held.delete(c); }
			for (const c of codes) if (!held.has(c)) { window.dispatchEvent(new KeyboardEvent("keydown", { code: c, key: c })); held.add(c); }
		};
		for (;;) {
			const me = game.me();
			if (me && me.score > start) break;
			if (Date.now() > deadline) { want([]); throw new Error("no coin within 15s"); }
			if (me) {
				const c = game.latest.items.reduce((a, b) => Math.hypot(a.x - me.x, a.y - me.y) <= Math.hypot(b.x - me.x, b.y - me.y) ? a : b);
				const codes = [];
				if (c.x > me.x + 4) codes.push("ArrowRight"); else if (c.x < me.x - 4) codes.push("ArrowLeft");
				if (c.y > me.y + 4) codes.push("ArrowDown"); else if (c.y < me.y - 4) codes.push("ArrowUp");
				want(codes);
			}
			await new Promise((r) => setTimeout(r, 20)); // the next state comes within 50 ms
		}
		want([]);
		// Stopped: the same position three ticks apart.
		const stopBy = Date.now() + 5000;
		for (let at = game.latest.tick, was = game.me(); ; ) {
			if (Date.now() > stopBy) throw new Error("the dot did not stop within 5s of the key-up");
			await new Promise((r) => setTimeout(r, 20));
			const me = game.me();
			if (!me || game.latest.tick < at + 3) continue;
			if (was && me.x === was.x && me.y === was.y) return me.score;
			at = game.latest.tick;
			was = me;
		}
	})()`)
}

// moveAway holds a key that moves the page's dot towards the arena's far
// side in x, and returns it (ArrowRight or ArrowLeft) and the dot's x.
func moveAway(p *page, seat int) (string, float64) {
	p.t.Helper()
	start := seen(p, seat)
	k := "ArrowRight"
	if start.X > gameserver.Width/2 {
		k = "ArrowLeft"
	}
	key(p, true, k, false)
	return k, start.X
}

// movedCond is the JavaScript condition "p moved at least d from x along k".
func movedCond(k string, x, d float64) string {
	if k == "ArrowRight" {
		return fmt.Sprintf("p.x >= %v", x+d)
	}
	return fmt.Sprintf("p.x <= %v", x-d)
}

// gameClient is a player driven from Go, for filling rooms: it reads (and
// drops) what it gets after its welcome, which it returns.
func gameClient(t *testing.T, base, query string) (*websocket.Conn, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws/game?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	_, data, err := c.Read(ctx)
	var w map[string]any
	if err != nil || json.Unmarshal(data, &w) != nil || w["type"] != "welcome" {
		t.Fatalf("%s: %s, %v", query, data, err)
	}
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return c, w
}

// TestGameInBrowser plays the game on one node: quick play from the lobby, a
// second player joins from the room list, keys move a dot in both pages
// (smoothly), a coin scores, a reload keeps seat and score, a player who
// goes away shows offline and comes back, a forged token and a full room
// are refused in words, an invitation link joins its room, and leaving
// frees the seat.
func TestGameInBrowser(t *testing.T) {
	browser := newBrowser(t)
	base := startGame(t)

	ann := newGamePage(t, browser, "ann")
	openLobby(ann, base)
	ann.waitFor("the empty room list", `document.getElementById("rooms-status").textContent.startsWith("No open rooms")`)
	setName(ann, "Ann")
	ann.do(chromedp.Click(chromedp.ID("quick")))
	wa := waitSeated(ann, 1)
	if wa.Again || wa.Token == "" || wa.Width != gameserver.Width || wa.Height != gameserver.Height || wa.Node != strings.TrimPrefix(base, "http://") {
		t.Fatalf("Ann's welcome: %+v", wa)
	}
	if node := eval[string](ann, `document.getElementById("node").textContent`); node != wa.Node {
		t.Errorf("the page shows node %q, the welcome says %q", node, wa.Node)
	}
	// The arena is drawn: a canvas of the arena's size, the own dot in its
	// seat's colour where the state puts it.
	ann.waitFor("the arena is drawn", `game.frames > 5 && game.rendered.has(game.seat)`)
	var drawn struct {
		W, H  float64
		Pixel [3]int
		Color string
	}
	if err := json.Unmarshal([]byte(eval[string](ann, `(() => {
		const c = document.getElementById("canvas");
		const d = c.width / game.welcome.width;
		const r = game.rendered.get(game.seat);
		const px = c.getContext("2d").getImageData(Math.round(r.x * d), Math.round(r.y * d), 1, 1).data;
		return JSON.stringify({ w: c.width / d, h: c.height / d, pixel: [px[0], px[1], px[2]],
			color: getComputedStyle(document.querySelector("#scores li.me .swatch")).backgroundColor });
	})()`)), &drawn); err != nil {
		t.Fatal(err)
	}
	if drawn.W != gameserver.Width || drawn.H != gameserver.Height || fmt.Sprintf("rgb(%d, %d, %d)", drawn.Pixel[0], drawn.Pixel[1], drawn.Pixel[2]) != drawn.Color {
		t.Fatalf("the canvas: %+v (the own dot's centre should have its seat's colour)", drawn)
	}

	// Bob joins Ann's room from the live list.
	bob := newGamePage(t, browser, "bob")
	openLobby(bob, base)
	row := fmt.Sprintf(`#rooms tr[data-room=%s]`, jsString(wa.Room))
	bob.waitFor("Ann's room is listed with 1 player", fmt.Sprintf(`document.querySelector(%s)?.dataset.players === "1"`, jsString(row)))
	setName(bob, "Bob")
	bob.do(chromedp.Click(chromedp.CSS(row + " button.join")))
	wb := waitSeated(bob, 1)
	if wb.Room != wa.Room || wb.Seat == wa.Seat {
		t.Fatalf("Bob's welcome %+v, Ann's %+v", wb, wa)
	}
	waitSeen(bob, "Bob sees Ann", wa.Seat, `p.name === "Ann" && p.online`)
	waitSeen(ann, "Ann sees Bob", wb.Seat, `p.name === "Bob" && p.online`)

	// A key press moves Ann's dot: one input when the key goes down (auto
	// repeats send nothing), one when it comes up.
	sent := eval[int](ann, `game.inputsSent`)
	k, x0 := moveAway(ann, wa.Seat)
	key(ann, true, k, true)
	key(ann, true, k, true)
	waitSeen(ann, "Ann's dot moves in her page", wa.Seat, movedCond(k, x0, 30))
	// Bob's page draws it between states, each frame no further back than
	// the one before. A frame drawn between two states is off the 0.1 grid
	// of the states' positions. How many frames are depends on the states
	// coming on time: the page places a state at its tick × 50 ms, so a
	// state more than RENDER_DELAY_MS (100 ms) late, or a room that ticks
	// slower than 20 a second, leaves it drawing the newest state it has
	// (with a CPU hog beside the test, 30 frames in a row showed only the
	// positions of 8 states). So frames are taken until 10 were drawn
	// between states (at least 30 frames, at most 10 s).
	var motion struct {
		Xs      []float64
		Between int
		Rate    int // the fewest states of a second the page counted meanwhile
	}
	if err := json.Unmarshal([]byte(eval[string](bob, fmt.Sprintf(`new Promise((resolve) => {
		const xs = [], until = Date.now() + 10000;
		let between = 0, rate = Infinity;
		const f = () => {
			const r = game.rendered.get(%d);
			if (r) {
				xs.push(r.x);
				if (Math.abs(r.x * 10 - Math.round(r.x * 10)) > 1e-6) between++;
			}
			rate = Math.min(rate, game.stateRate);
			if ((xs.length < 30 || between < 10) && Date.now() < until) requestAnimationFrame(f);
			else resolve(JSON.stringify({ xs, between, rate }));
		};
		requestAnimationFrame(f);
	})`, wa.Seat))), &motion); err != nil {
		t.Fatal(err)
	}
	waitSeen(bob, "Ann's dot moves in Bob's page", wa.Seat, movedCond(k, x0, 60))
	key(ann, false, k, false)
	ann.waitFor("one input down, one up", fmt.Sprintf(`game.inputsSent === %d`, sent+2))
	if in := eval[[][2]int](ann, `game.inputs.slice(-2)`); len(in) != 2 || in[0][0] == 0 || in[0][1] != 0 || in[1] != [2]int{0, 0} {
		t.Errorf("inputs sent for one key press: %v", in)
	}
	for i, x := range motion.Xs {
		if i > 0 && (x-motion.Xs[i-1])*(motion.Xs[len(motion.Xs)-1]-motion.Xs[0]) < 0 {
			t.Errorf("the drawn dot went back between frames: %v", motion.Xs)
			break
		}
	}
	if motion.Between < 10 {
		t.Errorf("%d of %d frames drawn between states in 10 s, with as few as %d states a second: not interpolated (%v)",
			motion.Between, len(motion.Xs), motion.Rate, motion.Xs)
	}

	// A coin scores, in both pages.
	score := collectCoin(ann)
	waitSeen(bob, "Bob sees Ann's point", wa.Seat, fmt.Sprintf("p.score === %d", score))
	ann.waitFor("the score board shows it", fmt.Sprintf(`document.querySelector('#scores li.me')?.dataset.score === "%d"`, score))

	// A reload keeps Ann's seat and score.
	ann.do(chromedp.Reload())
	again := waitSeated(ann, 1)
	if !again.Again || again.Seat != wa.Seat || again.Room != wa.Room || again.Token != wa.Token {
		t.Fatalf("after a reload: %+v (before: %+v)", again, wa)
	}
	if me := seen(ann, wa.Seat); me.Score != score || me.Name != "Ann" {
		t.Fatalf("after a reload Ann is %+v, her score was %d", me, score)
	}
	waitSeen(bob, "Bob sees Ann back", wa.Seat, fmt.Sprintf("p.online && p.score === %d", score))

	// Bob goes away: Ann sees him offline (greyed), then back.
	bob.do(chromedp.Navigate("about:blank"))
	ann.waitFor("Bob shows offline", fmt.Sprintf(`(() => { const li = document.querySelector('#scores li[data-seat="%d"]');
		return !!li && li.classList.contains("offline") && li.dataset.online === "false"; })()`, wb.Seat))
	bob.do(chromedp.Navigate(base + "/"))
	if w := waitSeated(bob, 1); !w.Again || w.Seat != wb.Seat {
		t.Fatalf("Bob back: %+v", w)
	}
	waitSeen(ann, "Bob shows online again", wb.Seat, "p.online")
	t.Logf("screenshot: %s", ann.screenshot(t.ArtifactDir(), "game-single-node.png"))

	// A token the server refuses: back to the lobby, in words.
	bob.do(chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("wsactor-game",
		JSON.stringify({ ...JSON.parse(sessionStorage.getItem("wsactor-game")), token: "forged" }))`))
	bob.do(chromedp.Reload())
	bob.waitFor("the lobby says the seat is gone", `!document.getElementById("lobby").hidden &&
		document.getElementById("lobby-msg").textContent.startsWith("Your seat is gone") && game.closes.at(-1).code === 4404`)
	if s := eval[*string](bob, `sessionStorage.getItem("wsactor-game")`); s != nil {
		t.Errorf("the refused token stayed in sessionStorage: %s", *s)
	}

	// A full room: listed as full, and refused in words when joined anyway.
	for i := range gameserver.MaxPlayers {
		gameClient(t, base, fmt.Sprintf("name=bot%d&room=full", i))
	}
	bob.waitFor("the full room is listed as full", `(() => { const b = document.querySelector('#rooms tr[data-room="full"] button');
		return !!b && b.disabled && b.textContent === "Full"; })()`)
	bob.do(chromedp.Evaluate[chromedp.Void](`game.play({ name: "Bob", room: "full" })`))
	bob.waitFor("the lobby says the room is full", `!document.getElementById("lobby").hidden &&
		document.getElementById("lobby-msg").textContent === "Room full is full (8 players). Pick another room, or Quick play."`)
	t.Logf("screenshot: %s", bob.screenshot(t.ArtifactDir(), "game-lobby-full.png"))

	// Ann's invitation link puts Bob straight into her room, from wherever
	// he is, and leaves the address clean for a reload.
	invite := eval[string](ann, `document.getElementById("invite").href`)
	if invite != base+"/?room="+wa.Room {
		t.Errorf("Ann's invitation link is %q", invite)
	}
	bob.do(chromedp.Navigate(invite))
	if w := waitSeated(bob, 1); w.Room != wa.Room || w.Again || w.Seat == wa.Seat {
		t.Errorf("Bob after following the invitation: %+v", w)
	}
	if u := eval[string](bob, `location.href`); u != base+"/" {
		t.Errorf("the invitation stayed in the address bar: %s", u)
	}
	// The tick line counts the states of the last second: 20 at 20 Hz.
	bob.waitFor("the tick line shows the state rate", `game.stateRate >= 15 &&
		document.getElementById("rate").textContent === String(game.stateRate)`)

	// Leaving gives the seat up (the server closes with 4410 "left: left").
	ann.do(chromedp.Click(chromedp.ID("leave")))
	ann.waitFor("Ann is back in the lobby", `!document.getElementById("lobby").hidden &&
		document.getElementById("lobby-msg").textContent === "You left the room." &&
		sessionStorage.getItem("wsactor-game") === null &&
		game.closes.at(-1).code === 4410 && game.closes.at(-1).reason === "left: left"`)
}
