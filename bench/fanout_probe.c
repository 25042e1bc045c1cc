/*
 * Probe: does one PACKET_FANOUT group remove what a receiving daemon's other sockets on the
 * EtherType cost a bulk receiver? (BENCHMARKS.md, "The largest lever left ...".)
 *
 * Runs in the receiving lab host and counts the raw blast (python -m l2fast.rawblast tx) on one
 * socket, in one of three layouts:
 *   alone     the counting socket only (the raw ceiling's layout);
 *   separate  two older sockets with a drop-everything filter, then the counting socket (the
 *             daemon's layout: every frame is offered to all three, and the counting socket,
 *             offered first, clones it);
 *   fanout    the same three sockets in one PACKET_FANOUT_CBPF group whose program hands every
 *             frame to the counting socket (one delivery, no clone).
 * Usage: fanout_probe MODE SECONDS (bench/fanout_probe.sh builds a lab and runs all three).
 * Build: cc -O2 -o /tmp/fanout_probe bench/fanout_probe.c
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/filter.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <poll.h>
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
static int opensock(void){ int fd=socket(AF_PACKET,SOCK_RAW,htons(0x88B5)); struct sockaddr_ll a={0}; a.sll_family=AF_PACKET; a.sll_protocol=htons(0x88B5); a.sll_ifindex=if_nametoindex("eth0"); if(bind(fd,(void*)&a,sizeof a)) perror("bind"); int rb=64<<20; setsockopt(fd,SOL_SOCKET,SO_RCVBUFFORCE,&rb,sizeof rb); return fd;}
static void reject_all(int fd){ struct sock_filter f[]={BPF_STMT(BPF_RET|BPF_K,0)}; struct sock_fprog p={1,f}; setsockopt(fd,SOL_SOCKET,SO_ATTACH_FILTER,&p,sizeof p);}
static void join(int fd,int id){ int v=(id&0xffff)|(PACKET_FANOUT_CBPF<<16); if(setsockopt(fd,SOL_PACKET,PACKET_FANOUT,&v,sizeof v)) perror("fanout");}
int main(int argc,char**argv){
  if(argc!=3 || (strcmp(argv[1],"alone") && strcmp(argv[1],"separate") && strcmp(argv[1],"fanout"))){
    fprintf(stderr,"usage: %s alone|separate|fanout SECONDS\n",argv[0]); return 2; }
  const char*mode=argv[1]; double secs=atof(argv[2]);
  int a=-1,b=-1,c;
  if(strcmp(mode,"alone")){ a=opensock(); b=opensock(); }
  c=opensock();
  if(!strcmp(mode,"separate")){ reject_all(a); reject_all(b); }
  if(!strcmp(mode,"fanout")){ int id=4242; join(a,id); join(b,id); join(c,id);
    struct sock_filter f[]={BPF_STMT(BPF_RET|BPF_K,2)}; struct sock_fprog p={1,f};
    if(setsockopt(a,SOL_PACKET,PACKET_FANOUT_DATA,&p,sizeof p)) perror("fanout data"); }
  static char buf[64][2048]; struct mmsghdr m[64]; struct iovec iov[64];
  for(int i=0;i<64;i++){ iov[i].iov_base=buf[i]; iov[i].iov_len=2048; memset(&m[i],0,sizeof m[i]); m[i].msg_hdr.msg_iov=&iov[i]; m[i].msg_hdr.msg_iovlen=1;}
  printf("ready\n"); fflush(stdout);
  long n=0; double first=0,last=0; double end=now()+secs+20;
  while(now()<end){ struct pollfd p={c,POLLIN,0}; if(poll(&p,1,500)<=0){ if(n) break; else continue; }
    int r=recvmmsg(c,m,64,MSG_DONTWAIT,NULL); if(r>0){ if(!n) first=now(); n+=r; last=now(); } }
  long other=0; if(a>=0){ for(;;){int r=recvmmsg(a,m,64,MSG_DONTWAIT,NULL); if(r<=0)break; other+=r;} for(;;){int r=recvmmsg(b,m,64,MSG_DONTWAIT,NULL); if(r<=0)break; other+=r;} }
  printf("%s: %.0f kfps (%ld frames, %ld on the other sockets)\n",mode,n/(last-first)/1e3,n,other);
}
