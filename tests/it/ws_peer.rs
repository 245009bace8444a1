//! A loopback WebSocket server standing in for a platform's socket: the test
//! says what it sends and reads what purser answers, frame by frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

const GUARD: Duration = Duration::from_secs(30);

pub struct WsServer {
    listener: TcpListener,
    pub addr: std::net::SocketAddr,
}

pub struct WsPeer {
    ws: WebSocketStream<TcpStream>,
    /// The path and query purser connected to.
    pub target: String,
}

impl WsServer {
    pub async fn bind() -> WsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        WsServer { listener, addr }
    }

    /// The next connection purser opens.
    #[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
    pub async fn accept(&self) -> WsPeer {
        tokio::time::timeout(GUARD, async {
            let (tcp, _) = self.listener.accept().await.unwrap();
            let mut target = String::new();
            let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, res: Response| {
                target = req.uri().to_string();
                Ok(res)
            })
            .await
            .unwrap();
            WsPeer { ws, target }
        })
        .await
        .expect("purser did not connect")
    }
}

impl WsPeer {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next JSON message purser sends (pings and pongs skipped).
    pub async fn recv(&mut self) -> Value {
        tokio::time::timeout(GUARD, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected a message, got {other:?}"),
                }
            }
        })
        .await
        .expect("purser sent nothing")
    }

    /// Waits for purser to close the connection (or drop it).
    pub async fn closed(&mut self) {
        tokio::time::timeout(GUARD, async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await
        .expect("purser kept the connection open")
    }
}

impl WsPeer {
    /// Closes from the server's side with `code`, as the platform does.
    pub async fn close(mut self, code: u16) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: code.into(),
                reason: "".into(),
            }))
            .await;
    }
}
