package wsactor_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// exLobby joins the room named in its path when it opens.
type exLobby struct{ joined chan<- wsactor.ID }

func (h exLobby) OnOpen(c *wsactor.Conn) error {
	err := c.Join(c.PathValue("room"), map[string]string{"name": c.Query().Get("name")})
	h.joined <- c.ID()
	return err
}

func (exLobby) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	return c.Broadcast(c.PathValue("room"), m, c.ID()) // to everyone else in the room
}

func ExampleServer_Groups() {
	joined := make(chan wsactor.ID, 2)
	s := wsactor.New(wsactor.Options{})
	s.Handle("/ws/{room}", func() wsactor.Handler { return exLobby{joined: joined} })
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann, _, _ := websocket.Dial(ctx, ts.URL+"/ws/lobby?name=Ann", nil)
	defer ann.CloseNow()
	<-joined
	bob, _, _ := websocket.Dial(ctx, ts.URL+"/ws/lobby?name=Bob", nil)
	defer bob.CloseNow()
	<-joined

	// Who is there, from outside any connection.
	members, _ := s.Groups().Members(ctx, "lobby")
	for _, m := range members {
		fmt.Println("member:", m.Meta["name"])
	}

	// A client's message reaches the others through its handler's Broadcast.
	_ = ann.Write(ctx, websocket.MessageText, []byte("hi from Ann"))
	_, data, _ := bob.Read(ctx)
	fmt.Println("Bob got:", string(data))

	// A broadcast from anywhere reaches every member.
	n, _ := s.Groups().Broadcast(ctx, "lobby", wsactor.Text("server notice"))
	_, a, _ := ann.Read(ctx)
	_, b, _ := bob.Read(ctx)
	fmt.Println(n, string(a), "/", string(b))
	// Unordered output:
	// member: Ann
	// member: Bob
	// Bob got: hi from Ann
	// 2 server notice / server notice
}
