//! A WebSocket client that writes frames byte for byte, as an attacker would: any opcode, any
//! FIN bit, headers without their payload, pipelined floods. It speaks just enough of RFC 6455
//! to log in and read what the relay sends (server frames are never masked).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::{Frame, Hostname, Login, Role, ServerHello};
use muxagent_proto::identity::Identity;
use smol::Async;
use smol::io::{AsyncReadExt, AsyncWriteExt};

pub const OP_CONTINUE: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The header of a client frame (masked, with a zero key: payload bytes go out as they are)
/// declaring `len` payload bytes.
pub fn header(opcode: u8, fin: bool, len: usize) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// A whole client frame.
pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = header(opcode, fin, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A binary message carrying `frame`.
pub fn message(frame: &Frame) -> Vec<u8> {
    self::frame(OP_BINARY, true, &frame.encode())
}

/// A TCP connection to `addr`, from `from` if given (any 127.x.y.z works on Linux loopback),
/// with the receive buffer set to `recv_buffer` if given.
pub fn tcp(
    addr: SocketAddr,
    from: Option<IpAddr>,
    recv_buffer: Option<usize>,
) -> io::Result<Async<TcpStream>> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(len) = recv_buffer {
        socket.set_recv_buffer_size(len)?;
    }
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect(&addr.into())?;
    socket.set_tcp_nodelay(true)?;
    Async::new(TcpStream::from(socket))
}

/// One raw connection. The socket is shared so a flood can be written while replies are read.
pub struct Raw {
    pub tcp: Arc<Async<TcpStream>>,
    buf: Vec<u8>,
}

impl Raw {
    pub fn new(tcp: Async<TcpStream>) -> Raw {
        Raw {
            tcp: Arc::new(tcp),
            buf: Vec::new(),
        }
    }

    /// Connect and upgrade to the relay's WebSocket; returns the relay's hello.
    pub async fn open(addr: SocketAddr, from: Option<IpAddr>) -> io::Result<(Raw, ServerHello)> {
        let mut raw = Raw::new(tcp(addr, from, None)?);
        let hello = raw.upgrade().await?;
        Ok((raw, hello))
    }

    /// Connect, upgrade and log in as `role`.
    pub async fn login(addr: SocketAddr, id: &Identity, role: Role) -> io::Result<Raw> {
        let (mut raw, hello) = Raw::open(addr, None).await?;
        raw.log_in(id, &hello, role).await?;
        Ok(raw)
    }

    /// Send the HTTP upgrade and read the 101 and the relay's hello.
    pub async fn upgrade(&mut self) -> io::Result<ServerHello> {
        let request = "GET /relay HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";
        self.write(request.as_bytes()).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                self.buf.drain(..end + 4);
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(io::Error::other(format!("no upgrade: {head}")));
                }
                break;
            }
            self.fill().await?;
        }
        match self.recv().await? {
            Some(Frame::ServerHello(hello)) => Ok(hello),
            other => Err(io::Error::other(format!("expected a hello, got {other:?}"))),
        }
    }

    /// Log in (hostname "raw" for machines) and wait for `LoginOk`.
    pub async fn log_in(
        &mut self,
        id: &Identity,
        hello: &ServerHello,
        role: Role,
    ) -> io::Result<()> {
        let hostname = (role != Role::Device).then(|| Hostname::try_from("raw").expect("short"));
        let login = Login::sign(id, &hello.challenge, role, hostname);
        self.write(&message(&Frame::Login(login))).await?;
        match self.recv().await? {
            Some(Frame::LoginOk(_)) => Ok(()),
            other => Err(io::Error::other(format!("login: {other:?}"))),
        }
    }

    pub async fn write(&self, bytes: &[u8]) -> io::Result<()> {
        (&*self.tcp).write_all(bytes).await
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = (&*self.tcp).read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next frame from the relay: (opcode, payload); `None` at EOF.
    pub async fn read_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if self.buf.len() >= 2 {
                let opcode = self.buf[0] & 0x0F;
                let short = usize::from(self.buf[1] & 0x7F);
                let (start, len) = match short {
                    126 if self.buf.len() >= 4 => (
                        4,
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    ),
                    127 if self.buf.len() >= 10 => {
                        let mut len = [0u8; 8];
                        len.copy_from_slice(&self.buf[2..10]);
                        (10, u64::from_be_bytes(len) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    len => (2, len),
                };
                if start != usize::MAX && self.buf.len() >= start + len {
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Ok(Some((opcode, payload)));
                }
            }
            match self.fill().await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next relay frame (control frames skipped); `None` once the relay closed.
    pub async fn recv(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match self.read_frame().await? {
                None => return Ok(None),
                Some((OP_BINARY, payload)) => match Frame::decode(&payload) {
                    Ok(Decoded::Known(frame)) => return Ok(Some(frame)),
                    Ok(Decoded::Unknown { .. }) => continue,
                    Err(e) => return Err(io::Error::other(e.to_string())),
                },
                Some((OP_CLOSE, _)) => return Ok(None),
                Some(_) => continue,
            }
        }
    }

    /// Read until the relay closes the connection; the frames it sent before.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = self.recv().await {
            frames.push(frame);
        }
        frames
    }
}
