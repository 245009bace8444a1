//! The parts of Slack's Block Kit purser draws with: sections, context
//! lines and buttons, typed so that a misspelt field is a compile error and
//! not a message Slack refuses. Serialized as Slack documents them.

use serde::{Deserialize, Serialize};

/// One block of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// A paragraph of mrkdwn (at most 3,000 characters).
    Section { text: Text },
    /// Small print under a block.
    Context { elements: Vec<Text> },
    /// A row of buttons (at most 25).
    Actions { elements: Vec<Element> },
}

/// A text object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Text {
    Mrkdwn { text: String },
    PlainText { text: String },
}

/// An interactive element of an actions block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Element {
    Button(ButtonElement),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ButtonElement {
    pub action_id: String,
    pub value: String,
    pub text: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<Style>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Primary,
    Danger,
}

impl Block {
    pub fn section(mrkdwn: impl Into<String>) -> Block {
        Block::Section {
            text: Text::Mrkdwn {
                text: mrkdwn.into(),
            },
        }
    }

    pub fn context(mrkdwn: impl Into<String>) -> Block {
        Block::Context {
            elements: vec![Text::Mrkdwn {
                text: mrkdwn.into(),
            }],
        }
    }

    pub fn actions(buttons: Vec<ButtonElement>) -> Block {
        Block::Actions {
            elements: buttons.into_iter().map(Element::Button).collect(),
        }
    }
}

impl ButtonElement {
    pub fn new(
        action_id: impl Into<String>,
        value: impl Into<String>,
        label: impl Into<String>,
        style: Option<Style>,
    ) -> ButtonElement {
        ButtonElement {
            action_id: action_id.into(),
            value: value.into(),
            text: Text::PlainText { text: label.into() },
            style,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_serialize_as_slack_documents_them() {
        let blocks = vec![
            Block::section("*low_balance* · acme"),
            Block::context("id `e0fae2a6`"),
            Block::actions(vec![
                ButtonElement::new("ack", "fp", "Acknowledge", Some(Style::Primary)),
                ButtonElement::new("silence_1h", "fp", "Silence 1 h", None),
            ]),
        ];
        assert_eq!(
            serde_json::to_value(&blocks).unwrap(),
            json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": "*low_balance* · acme"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "id `e0fae2a6`"}]},
                {"type": "actions", "elements": [
                    {"type": "button", "action_id": "ack", "value": "fp", "style": "primary",
                     "text": {"type": "plain_text", "text": "Acknowledge"}},
                    {"type": "button", "action_id": "silence_1h", "value": "fp",
                     "text": {"type": "plain_text", "text": "Silence 1 h"}}
                ]}
            ])
        );
    }

    #[test]
    fn blocks_slack_sends_back_read_despite_their_extra_fields() {
        // As a block_actions payload carries the message: ids and flags added.
        let back = json!({"type": "actions", "block_id": "x1Y", "elements": [
            {"type": "button", "action_id": "ack", "block_id": "x1Y", "value": "fp",
             "text": {"type": "plain_text", "text": "Acknowledge", "emoji": true}}]});
        let block: Block = serde_json::from_value(back).unwrap();
        assert_eq!(
            block,
            Block::actions(vec![ButtonElement::new("ack", "fp", "Acknowledge", None)])
        );
        assert!(serde_json::from_value::<Block>(json!({"type": "rich_text"})).is_err());
    }
}
