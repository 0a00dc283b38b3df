//! Published ports (`rbk run -p`), in Docker's words: a port-less host side
//! (`-p 80`, `-p 127.0.0.1::80`) gets a free port of the host; a port
//! already taken fails the run before the container exists; `rbk ps` and
//! `rbk port` show `0.0.0.0:49153->80/tcp`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use rbk_runtime::sandbox::net::PortMapping;

use rbk_runtime::container;

/// `rbk port`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rbk port web\n  rbk port web 80\n  rbk port web 53/udp")]
pub struct PortArgs {
    /// Container name or id
    #[arg(add = crate::complete::containers())]
    container: String,
    /// Only this port of the container: PORT[/tcp|/udp]
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

/// Binds `p`'s host side: a free port when it names none.
/// The socket is returned to hold the port while the others are chosen.
fn bind(p: &PortMapping) -> Result<(OwnedFd, u16)> {
    let ip: Ipv4Addr = p
        .host_ip
        .parse()
        .map_err(|_| anyhow!("{:?} is not an IPv4 address", p.host_ip))?;
    let addr = SocketAddrV4::new(ip, p.host_port);
    let bound = match p.proto.as_str() {
        "udp" => UdpSocket::bind(addr).and_then(|s| Ok((s.local_addr()?.port(), s.into()))),
        _ => TcpListener::bind(addr).and_then(|s| Ok((s.local_addr()?.port(), s.into()))),
    };
    match bound {
        Ok((port, held)) => Ok((held, port)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot publish {addr}/{} to the container's port {}: address already in use",
            p.proto,
            p.container_port
        ),
        Err(e) => bail!(
            "cannot publish {addr}/{} to the container's port {}: {e}",
            p.proto,
            p.container_port
        ),
    }
}

/// The mappings with every host port chosen and checked free: a taken one
/// fails here, before the container is on record.
pub fn choose(ports: &[PortMapping]) -> Result<Vec<PortMapping>> {
    // Held until all are chosen, so two random ports differ.
    let mut held = Vec::new();
    let mut out = Vec::new();
    for p in ports {
        let (socket, port) = bind(p)?;
        held.push(socket);
        out.push(PortMapping {
            host_port: port,
            ..p.clone()
        });
    }
    drop(held);
    Ok(out)
}

/// A recorded `-p` in `docker ps`'s words: `0.0.0.0:49153->80/tcp`.
pub fn docker_text(spec: &str) -> String {
    match PortMapping::parse(spec) {
        Ok(p) => format!(
            "{}:{}->{}/{}",
            p.host_ip, p.host_port, p.container_port, p.proto
        ),
        Err(_) => spec.to_string(),
    }
}

/// `rbk port`: the host side of a running container's published ports.
pub fn port(root: &Path, a: &PortArgs, out: &mut dyn Write) -> Result<i32> {
    let s = container::find(root, &a.container)?;
    let ports: Vec<PortMapping> = match container::running(root, &s.id) {
        true => s
            .ports
            .iter()
            .filter_map(|p| PortMapping::parse(p).ok())
            .collect(),
        false => Vec::new(),
    };
    let Some(want) = &a.port else {
        for p in &ports {
            writeln!(
                out,
                "{}/{} -> {}:{}",
                p.container_port, p.proto, p.host_ip, p.host_port
            )?;
        }
        return Ok(0);
    };
    let (num, proto) = want.split_once('/').unwrap_or((want, "tcp"));
    let num: u16 = num
        .parse()
        .map_err(|_| anyhow!("invalid port {want:?}: use PORT[/tcp|/udp]"))?;
    let hits: Vec<&PortMapping> = ports
        .iter()
        .filter(|p| p.container_port == num && p.proto == proto)
        .collect();
    if hits.is_empty() {
        bail!("no public port '{num}/{proto}' published for {}", s.name);
    }
    for p in hits {
        writeln!(out, "{}:{}", p.host_ip, p.host_port)?;
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_portless_host_side_gets_a_free_port() {
        let ps = [
            PortMapping::parse("127.0.0.1::80").unwrap(),
            PortMapping::parse("127.0.0.1::81").unwrap(),
            PortMapping::parse("127.0.0.1::53/udp").unwrap(),
        ];
        let chosen = choose(&ps).unwrap();
        assert!(chosen.iter().all(|p| p.host_port != 0), "{chosen:?}");
        assert_ne!(chosen[0].host_port, chosen[1].host_port);
        assert_eq!(chosen[2].proto, "udp");
        // Free: it can be bound again.
        TcpListener::bind(("127.0.0.1", chosen[0].host_port)).unwrap();
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = choose(&[PortMapping::parse(&format!("127.0.0.1:{port}:80")).unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("address already in use"),
            "{e}"
        );
    }

    #[test]
    fn ps_shows_ports_as_docker() {
        assert_eq!(docker_text("0.0.0.0:49153:80/tcp"), "0.0.0.0:49153->80/tcp");
        assert_eq!(docker_text("8080:80"), "0.0.0.0:8080->80/tcp");
        assert_eq!(
            docker_text("127.0.0.1:5353:53/udp"),
            "127.0.0.1:5353->53/udp"
        );
    }
}
