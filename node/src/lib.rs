//! meshchat-node
