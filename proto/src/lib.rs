//! Township's gRPC APIs as Rust types: messages, clients and servers generated from `proto/`, plus the
//! encoded descriptor set that server reflection serves. Beside them, what every server and client
//! agrees on outside the messages: [`town`] (each service's default port and address variable) and
//! [`money`] (amounts as people write them).

/// The encoded `FileDescriptorSet` of every Township `.proto` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/township_descriptor.bin"));

pub mod money;
pub mod town;

/// `township.time.v1`: the day/time service.
pub mod time {
    /// Version 1 of the time API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("township.time.v1");
    }
}

/// `township.lock.v1`: readers/writers locks with leases and fencing tokens.
pub mod lock {
    /// Version 1 of the lock API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("township.lock.v1");
    }
}

/// `township.bank.v1`: ATM banking on the shared lock service.
pub mod bank {
    /// Version 1 of the bank API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("township.bank.v1");
    }
}

/// `township.phonebook.v1`: one shared, durable phone book.
pub mod phonebook {
    /// Version 1 of the phone book API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("township.phonebook.v1");
    }
}

/// `township.doctor.v1`: the ELIZA-style doctor that remembers every patient.
pub mod doctor {
    /// Version 1 of the doctor API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("township.doctor.v1");
    }
}

/// `township.chat.v1`: rooms with durable, streaming transcripts.
pub mod chat {
    /// Version 1 of the chat API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("township.chat.v1");
    }
}

/// The API contract and its breaking-change check against the committed snapshot.
pub mod contract;
