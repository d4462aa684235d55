// probe: the test bed's own small static program for pods on the real node (tools/testbed/node.py
// builds it with CGO_ENABLED=0 and wraps it as the image local.test/probe).  Standard library only.
//
//	probe serve ADDR TEXT        HTTP server answering TEXT and the host name
//	probe get URL                GET, prints "status=N" and the body
//	probe api PATH               GET https://kubernetes.default.svc/PATH with the pod's ServiceAccount token
//	probe lookup NAME            resolve with the pod's /etc/resolv.conf, prints the addresses
//	probe dial HOST:PORT SECS    TCP connect, prints "connected" or the error
//	probe route-default GW       add a default route via GW (needs NET_ADMIN)
//	probe write FILE TEXT / cat FILE
//	probe hog MB                 allocate and touch MB mebibytes, then sleep
//	probe echo WORDS... / sleep
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func get(client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		die("error: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("status=%d\n%s\n", resp.StatusCode, body)
}

func serve(addr, text string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", text, host)
	})
	fmt.Printf("serving on %s\n", addr)
	die("%v", http.ListenAndServe(addr, nil))
}

func api(path string) {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	token, err := os.ReadFile(sa + "token")
	if err != nil {
		die("error: %v", err)
	}
	ca, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		die("error: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", "https://kubernetes.default.svc/"+strings.TrimPrefix(path, "/"), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	get(client, req)
}

// routeDefault sends one RTM_NEWROUTE netlink message: 0.0.0.0/0 via gw in the main table.
func routeDefault(gw string) {
	ip := net.ParseIP(gw).To4()
	if ip == nil {
		die("not an IPv4 address: %s", gw)
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW, syscall.NETLINK_ROUTE)
	if err != nil {
		die("netlink: %v", err)
	}
	defer syscall.Close(fd)
	msg := make([]byte, 16+12+8)
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.LittleEndian.PutUint16(msg[4:], syscall.RTM_NEWROUTE)
	binary.LittleEndian.PutUint16(msg[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK|syscall.NLM_F_CREATE|syscall.NLM_F_EXCL)
	binary.LittleEndian.PutUint32(msg[8:], 1)
	rt := msg[16:28] // family, dst_len, src_len, tos, table, protocol, scope, type, flags(4)
	rt[0], rt[4], rt[5], rt[6], rt[7] = syscall.AF_INET, syscall.RT_TABLE_MAIN, syscall.RTPROT_BOOT, syscall.RT_SCOPE_UNIVERSE, syscall.RTN_UNICAST
	attr := msg[28:]
	binary.LittleEndian.PutUint16(attr[0:], 8)
	binary.LittleEndian.PutUint16(attr[2:], syscall.RTA_GATEWAY)
	copy(attr[4:], ip)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		die("netlink send: %v", err)
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil || n < 20 {
		die("netlink receive: %v", err)
	}
	if code := int32(binary.LittleEndian.Uint32(buf[16:])); code != 0 {
		die("adding the route failed: %v", syscall.Errno(-code))
	}
	fmt.Printf("default route via %s\n", gw)
}

func hog(mb int) {
	chunks := make([][]byte, 0, mb)
	for i := 0; i < mb; i++ {
		c := make([]byte, 1<<20)
		for j := 0; j < len(c); j += 4096 {
			c[j] = 1
		}
		chunks = append(chunks, c)
		if i%16 == 0 {
			fmt.Printf("allocated %d MiB\n", i+1)
		}
	}
	fmt.Printf("allocated %d MiB\n", len(chunks))
	for {
		time.Sleep(time.Hour)
	}
}

func main() {
	if len(os.Args) < 2 {
		die("usage: probe serve|get|api|lookup|dial|route-default|write|cat|hog|echo|sleep ...")
	}
	args := os.Args[2:]
	need := func(n int) {
		if len(args) < n {
			die("%s needs %d arguments", os.Args[1], n)
		}
	}
	switch os.Args[1] {
	case "serve":
		need(2)
		serve(args[0], args[1])
	case "get":
		need(1)
		req, _ := http.NewRequest("GET", args[0], nil)
		get(&http.Client{Timeout: 10 * time.Second}, req)
	case "api":
		need(1)
		api(args[0])
	case "lookup":
		need(1)
		addrs, err := net.LookupHost(args[0])
		if err != nil {
			die("error: %v", err)
		}
		fmt.Println(strings.Join(addrs, " "))
	case "dial":
		need(2)
		secs, _ := strconv.Atoi(args[1])
		conn, err := net.DialTimeout("tcp", args[0], time.Duration(secs)*time.Second)
		if err != nil {
			die("error: %v", err)
		}
		conn.Close()
		fmt.Println("connected")
	case "route-default":
		need(1)
		routeDefault(args[0])
	case "write":
		need(2)
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			die("error: %v", err)
		}
	case "cat":
		need(1)
		data, err := os.ReadFile(args[0])
		if err != nil {
			die("error: %v", err)
		}
		os.Stdout.Write(data)
	case "hog":
		need(1)
		mb, _ := strconv.Atoi(args[0])
		hog(mb)
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "sleep":
		for {
		time.Sleep(time.Hour)
	}
	default:
		die("unknown command %s", os.Args[1])
	}
}
